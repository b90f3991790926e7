package server

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec requestCodec wraps
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Requests that do not decode. grpc-go turns an error of the codec into
// INTERNAL before any handler or interceptor runs (rpc_util.go, recv:
// "grpc: failed to unmarshal the received message"), whatever status the
// codec returns, and protobuf-go refuses a proto3 string that is not valid
// UTF-8. So a client that sent `service: "\xff"` got INTERNAL, naming no
// field. requestCodec decodes instead: a request that fails to decode
// becomes an empty message carrying, in an unknown field of a reserved
// number, the violation that names what is wrong (found by walking the wire
// bytes against the message's descriptor); the service's interceptors
// (checkDecoded) answer it INVALID_ARGUMENT before any handler sees it.

// undecodableField is the field number of the marker: the largest valid
// field number, which no canary.v1 message uses.
const undecodableField = protowire.MaxValidNumber

// requestCodec is the proto codec of grpc-go, except for requests that do
// not decode (see above).
type requestCodec struct{ base encoding.CodecV2 }

func newRequestCodec() requestCodec {
	return requestCodec{base: encoding.GetCodecV2("proto")}
}

// codecOption installs requestCodec on a server.
func codecOption() grpc.ServerOption { return grpc.ForceServerCodecV2(newRequestCodec()) }

func (c requestCodec) Name() string                           { return c.base.Name() }
func (c requestCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }
func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	fv := &errdetails.BadRequest_FieldViolation{Description: "malformed request: " + err.Error()}
	if path, found := invalidUTF8(m.ProtoReflect().Descriptor(), data.Materialize(), ""); found {
		fv = violation(path, "must be valid UTF-8")
	}
	marker, merr := proto.Marshal(fv)
	if merr != nil {
		return err
	}
	proto.Reset(m)
	m.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, undecodableField, protowire.BytesType), marker))
	return nil
}

// checkDecoded returns the INVALID_ARGUMENT error of a request that
// requestCodec could not decode, or nil.
func checkDecoded(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	b := m.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num != undecodableField || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil
		}
		fv := new(errdetails.BadRequest_FieldViolation)
		if err := proto.Unmarshal(v, fv); err != nil {
			fv.Description = "malformed request"
		}
		if fv.GetField() == "" {
			return badRequestStatus(fv.GetDescription())
		}
		return invalid(fv).status().Err()
	}
	return nil
}

func badRequestStatus(msg string) error {
	return (&apiError{code: codes.InvalidArgument, msg: msg}).status().Err()
}

// decodedStream is a server stream whose received messages are checked
// with checkDecoded.
type decodedStream struct{ grpc.ServerStream }

func (s decodedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return checkDecoded(m)
}

// invalidUTF8 returns the path (as the API names fields:
// "batch.samples[3].metric", `baseline_labels["version"]`) of the first
// string field of b, a message of type md in wire format, that is not valid
// UTF-8; found is false when there is none (or b is malformed otherwise).
func invalidUTF8(md protoreflect.MessageDescriptor, b []byte, prefix string) (path string, found bool) {
	seen := map[protowire.Number]int{}
	bytesFields(b, func(num protowire.Number, v []byte) bool {
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			return true
		}
		idx := seen[num]
		seen[num]++
		field := joinPath(prefix, string(fd.Name()))
		if fd.IsList() {
			field = fmt.Sprintf("%s[%d]", field, idx)
		}
		switch {
		case fd.IsMap():
			path, found = invalidUTF8InEntry(fd, v, field)
		case fd.Kind() == protoreflect.StringKind:
			path, found = field, !utf8.Valid(v)
		case fd.Kind() == protoreflect.MessageKind:
			path, found = invalidUTF8(fd.Message(), v, field)
		}
		return !found
	})
	if !found {
		path = ""
	}
	return path, found
}

// bytesFields calls f with the number and the value of each
// length-delimited field of the wire-format message b, in order, skipping
// the fields of other wire types, until f returns false or b ends or turns
// out malformed (the fields read so far have been passed to f).
func bytesFields(b []byte, f func(num protowire.Number, v []byte) bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if !f(num, v) {
			return
		}
	}
}

// invalidUTF8InEntry is invalidUTF8 for one entry of the map field fd: a
// bad key names the map, a bad value names the entry (`labels["k"]`).
func invalidUTF8InEntry(fd protoreflect.FieldDescriptor, b []byte, field string) (string, bool) {
	var key, val []byte
	var hasVal bool
	bytesFields(b, func(num protowire.Number, v []byte) bool {
		switch num {
		case 1:
			key = v
		case 2:
			val, hasVal = v, true
		}
		return true
	})
	kd, vd := fd.MapKey(), fd.MapValue()
	if kd.Kind() == protoreflect.StringKind && !utf8.Valid(key) {
		return field, true
	}
	entry := fmt.Sprintf("%s[%q]", field, key)
	switch {
	case !hasVal:
	case vd.Kind() == protoreflect.StringKind:
		if !utf8.Valid(val) {
			return entry, true
		}
	case vd.Kind() == protoreflect.MessageKind:
		return invalidUTF8(vd.Message(), val, entry)
	}
	return "", false
}
