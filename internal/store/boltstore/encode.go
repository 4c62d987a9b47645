package boltstore

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"unicode/utf8"

	"github.com/proxyctl/proxyctl/internal/capture"
)

// itemJSON encodes a capture.Item to the same JSON document as capture's
// own encoding (fields in another order), without calling
// capture.Body.MarshalJSON: encoding/json validates and compacts again
// whatever a MarshalJSON method returns, which for bodies of a kilobyte
// took half the CPU time of an append. The embedded item brings every
// other field, including any added later; the two body fields shadow its
// own. Items are decoded into capture.Item as usual.
type itemJSON struct {
	*capture.Item
	RequestBody  bodyJSON `json:"requestBody"`
	ResponseBody bodyJSON `json:"responseBody"`
}

// bodyJSON is capture.Body's wire form (see capture.Body.MarshalJSON).
type bodyJSON struct {
	Text      *string `json:"text,omitempty"`
	Base64    *string `json:"base64,omitempty"`
	Truncated bool    `json:"truncated"`
	Size      int64   `json:"size"`
	SHA256    string  `json:"sha256,omitempty"`
}

// newBodyJSON returns what capture.Body.MarshalJSON encodes: Size and
// SHA256 filled in from Data when the publisher left them zero, text when
// Data is valid UTF-8, base64 otherwise.
func newBodyJSON(b capture.Body) bodyJSON {
	if b.Size == 0 && len(b.Data) > 0 && !b.Truncated {
		b.Size = int64(len(b.Data))
		b.SHA256 = sha256.Sum256(b.Data)
	}
	w := bodyJSON{Truncated: b.Truncated, Size: b.Size}
	var s string
	if utf8.Valid(b.Data) {
		s = string(b.Data)
		w.Text = &s
	} else {
		s = base64.StdEncoding.EncodeToString(b.Data)
		w.Base64 = &s
	}
	if b.Size > 0 {
		w.SHA256 = hex.EncodeToString(b.SHA256[:])
	}
	return w
}

// newItemJSON returns the value to encode for it.
func newItemJSON(it *capture.Item) itemJSON {
	return itemJSON{
		Item:         it,
		RequestBody:  newBodyJSON(it.RequestBody),
		ResponseBody: newBodyJSON(it.ResponseBody),
	}
}

// marshalItem returns the JSON encoding of it.
func marshalItem(it *capture.Item) ([]byte, error) {
	return json.Marshal(newItemJSON(it))
}
