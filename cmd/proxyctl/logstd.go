package main

import (
	"log"
	"strings"

	"github.com/rs/zerolog"
)

// zerologStd adapts net/http's server error log (TLS handshake errors,
// hijack failures ...) to the command's logger at warn level.
func zerologStd(l zerolog.Logger) *log.Logger {
	return log.New(stdWriter{l}, "", 0)
}

type stdWriter struct{ l zerolog.Logger }

func (w stdWriter) Write(p []byte) (int, error) {
	w.l.Warn().Str("component", "http").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
