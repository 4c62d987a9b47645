package admin

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
)

// listTraffic serves GET /api/sessions/{id}/traffic: the session's traffic
// items, oldest first. ?since= (or ?cursor=) is an exclusive timestamp
// cursor in unix microseconds, as returned in next; ?limit= is 1..1000
// (store.DefaultLimit when absent). next is the last item's timestamp when
// more items may follow, "" otherwise.
func (s *Server) listTraffic(w http.ResponseWriter, r *http.Request) {
	p, err := PageFrom(r)
	if err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	var after int64
	if p.Cursor != "" {
		after, err = strconv.ParseInt(p.Cursor, 10, 64)
		if err != nil || after < 0 {
			WriteError(w, http.StatusBadRequest, "since must be a timestamp cursor (unix microseconds, as in next)")
			return
		}
	}
	id := r.PathValue("id")
	if s.Sessions != nil {
		if _, err := s.Sessions.Get(r.Context(), id); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				WriteError(w, http.StatusNotFound, "unknown session")
				return
			}
			s.storeError(w, err)
			return
		}
	}
	limit := p.EffectiveLimit()
	// One more than asked tells whether another page exists; at MaxLimit
	// the store clamps the extra one away, so a second, one-item query
	// answers instead.
	items, err := s.Traffic.ListTraffic(r.Context(), id, after, limit+1)
	if err != nil {
		s.storeError(w, err)
		return
	}
	more := len(items) > limit
	if more {
		items = items[:limit]
	} else if len(items) == limit && limit >= store.MaxLimit {
		probe, err := s.Traffic.ListTraffic(r.Context(), id, items[len(items)-1].Timestamp, 1)
		if err != nil {
			s.storeError(w, err)
			return
		}
		more = len(probe) > 0
	}
	var next string
	if more {
		next = strconv.FormatInt(items[len(items)-1].Timestamp, 10)
	}
	if items == nil {
		items = []capture.Item{}
	}
	WriteJSON(w, http.StatusOK, List[capture.Item]{Items: items, Next: next})
}
