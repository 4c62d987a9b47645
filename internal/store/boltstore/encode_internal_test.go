package boltstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/proxyctl/proxyctl/internal/capture"
)

// TestMarshalItemSameDocument checks that marshalItem writes the document
// capture's own encoding writes, for every kind of body.
func TestMarshalItemSameDocument(t *testing.T) {
	if n := reflect.TypeFor[capture.Body]().NumField(); n != 4 {
		t.Fatalf("capture.Body has %d fields, capture.Item.AppendJSON was written for 4: update it", n)
	}
	original := bytes.Repeat([]byte{0x00, 0x9f, 0x92, 0x96}, 100)
	bodies := map[string]capture.Body{
		"empty":      {},
		"text":       capture.NewBody([]byte(`{"a":"<b>&ü"}`)),
		"binary":     capture.NewBody([]byte{0xff, 0xfe, 0x00, 'a'}),
		"data only":  {Data: []byte("size and hash left to the encoder")},
		"truncated":  {Data: original[:10], Size: int64(len(original)), SHA256: sha256.Sum256(original), Truncated: true},
		"no data":    {Size: 12, SHA256: sha256.Sum256([]byte("hello world!")), Truncated: true},
		"empty data": {Data: []byte{}},
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			it := &capture.Item{
				SessionID: "s", Timestamp: 42, ID: "id", Kind: capture.KindHTTP, Method: "GET", Path: "/p?q=<1>",
				Status: 200, Direction: capture.DirClientToServer, Stubbed: true, DurationMs: 1.5, Error: "e",
				RequestHeaders:  map[string][]string{"A": {"1", "2"}},
				ResponseHeaders: map[string][]string{"B": {"<3>"}},
				RequestBody:     body,
				ResponseBody:    capture.NewBody([]byte("ok")),
			}
			want, err := json.Marshal(it)
			if err != nil {
				t.Fatal(err)
			}
			got, err := marshalItem(it)
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("marshalItem wrote invalid JSON %s: %v", got, err)
			}
			if err := json.Unmarshal(want, &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("document:\n got %s\nwant %s", got, want)
			}
			if len(got) != len(want) {
				t.Errorf("length %d, capture's encoding %d", len(got), len(want))
			}
		})
	}
}
