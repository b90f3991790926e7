package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// BenchmarkHTTPOverhead compares a call through the HTTP/JSON API with the
// same call over gRPC, on one daemon (embedded store, loopback): Ingest of
// a batch of 2×(n latencies + n/10 order values + 1 count pair), and Judge
// of a run holding 20 such batches of n = 1000. The difference is the
// gateway's cost: JSON decoding and encoding, and the in-memory gRPC hop.
func BenchmarkHTTPOverhead(b *testing.B) {
	grpcAddr, httpAddr := startRun(b, Options{})
	ctx := context.Background()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := canaryv1.NewCanaryServiceClient(conn)
	if _, err := c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("bench")}}); err != nil {
		b.Fatal(err)
	}
	newRun := func(id string) string {
		r, err := c.CreateRun(ctx, &canaryv1.CreateRunRequest{RequestId: id, Service: "bench", Stage: "s",
			Config: &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "bench"}}})
		if err != nil {
			b.Fatal(err)
		}
		return r.GetRun().GetId()
	}
	post := func(url string, body []byte) {
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("POST %s: %d %v", url, resp.StatusCode, err)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{100, 1000, 10000} {
		for _, via := range []string{"grpc", "http"} {
			b.Run(fmt.Sprintf("Ingest/n=%d/%s", n, via), func(b *testing.B) {
				run := newRun(fmt.Sprintf("ingest-%d-%s", n, via))
				batch := makeBatch(rng, run, "", scenario{Latency: 1, Errors: 1, N: n})
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					batch.BatchId = fmt.Sprint(i)
					i++
					if via == "grpc" {
						if _, err := c.Ingest(ctx, &canaryv1.IngestRequest{Batch: batch}); err != nil {
							b.Fatal(err)
						}
						continue
					}
					j, err := protojson.Marshal(batch)
					if err != nil {
						b.Fatal(err)
					}
					post("http://"+httpAddr+"/v1/runs/"+run+"/batches", j)
				}
			})
		}
	}
	run := newRun("judge")
	for i := range 20 {
		if _, err := c.Ingest(ctx, &canaryv1.IngestRequest{Batch: makeBatch(rng, run, fmt.Sprint(i), scenario{Latency: 1, Errors: 1, N: 1000})}); err != nil {
			b.Fatal(err)
		}
	}
	for _, via := range []string{"grpc", "http"} {
		b.Run("Judge/"+via, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if via == "grpc" {
					if _, err := c.Judge(ctx, &canaryv1.JudgeRequest{RunId: run}); err != nil {
						b.Fatal(err)
					}
					continue
				}
				resp, err := http.Get("http://" + httpAddr + "/v1/runs/" + run + "/verdict")
				if err != nil {
					b.Fatal(err)
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("judge: %d %v", resp.StatusCode, err)
				}
			}
		})
	}
}
