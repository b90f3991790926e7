package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Output formats of -o. table is for people; wide is a table with more
// columns (the list commands); json and yaml print the API's messages in
// protojson, the same JSON the HTTP API answers (camelCase field names,
// enums by name, int64 as strings, unset fields left out), and YAML
// converted from it key for key.
const (
	outTable = "table"
	outWide  = "wide"
	outJSON  = "json"
	outYAML  = "yaml"
)

// outputFormats are the values of -o for the commands that print the
// service's messages.
var outputFormats = []string{outTable, outWide, outJSON, outYAML}

// checkOutput validates -o against the formats a command prints.
func checkOutput(o string, formats ...string) error {
	if len(formats) == 0 {
		formats = outputFormats
	}
	if !slices.Contains(formats, o) {
		return usagef("-o must be %s (got %q)", orList(formats), o)
	}
	return nil
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// structured reports whether format prints a message (json or yaml)
// rather than a table.
func structured(format string) bool { return format == outJSON || format == outYAML }

// messageJSON returns the protojson of m, indented (protojson's own
// indentation varies on purpose from build to build; encoding/json's is
// stable), or on one line when compact.
func messageJSON(m proto.Message, compact bool) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	var buf bytes.Buffer
	if compact {
		err = json.Compact(&buf, b)
	} else {
		err = json.Indent(&buf, b, "", "  ")
	}
	if err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// printMessage writes m as json or yaml.
func printMessage(w io.Writer, format string, m proto.Message) error {
	b, err := messageJSON(m, false)
	if err != nil {
		return err
	}
	if format == outYAML {
		if b, err = jsonToYAML(b); err != nil {
			return err
		}
	}
	_, err = w.Write(b)
	return err
}

// printValue writes v, a Go value that is not an API message (the summary
// of ingest, the report of simulate, the build info), as json or yaml.
func printValue(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if format == outYAML {
		if b, err = jsonToYAML(b); err != nil {
			return err
		}
	}
	_, err = w.Write(b)
	return err
}

// jsonToYAML converts a JSON document to block-style YAML with the same
// keys in the same order; strings stay strings ("123", "true" are quoted).
func jsonToYAML(b []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("convert JSON to YAML: %w", err)
	}
	var unstyle func(*yaml.Node)
	unstyle = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			unstyle(c)
		}
	}
	unstyle(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("convert JSON to YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
