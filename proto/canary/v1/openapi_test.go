package canaryv1_test

import (
	"encoding/json"
	"os"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestHTTPRoutes checks that every RPC of the CanaryService has an HTTP
// route (google.api.http) and that the committed OpenAPI description
// (docs/api/canary.swagger.json, written by proto/gen.sh) has that
// operation: a method added without a route, or a stale description,
// fails.
func TestHTTPRoutes(t *testing.T) {
	b, err := os.ReadFile("../../../docs/api/canary.swagger.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	ops := map[string]string{} // operationId -> "METHOD path"
	for path, methods := range doc.Paths {
		for m, op := range methods {
			ops[op.OperationID] = m + " " + path
		}
	}
	methods := canaryv1.File_canary_v1_canary_proto.Services().ByName("CanaryService").Methods()
	for i := range methods.Len() {
		m := methods.Get(i)
		rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
		if rule.GetPattern() == nil {
			t.Errorf("%s has no google.api.http route", m.Name())
			continue
		}
		if _, ok := ops["CanaryService_"+string(m.Name())]; !ok {
			t.Errorf("%s is not in docs/api/canary.swagger.json: run proto/gen.sh", m.Name())
		}
	}
	if len(ops) != methods.Len() {
		t.Errorf("the OpenAPI description has %d operations, the service %d methods", len(ops), methods.Len())
	}
}
