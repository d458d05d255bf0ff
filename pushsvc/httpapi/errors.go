package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herald-sd/herald/pushsvc"
)

// errorBody is every error's JSON body. Field names the request field at
// fault (a JSON field, a path segment or a query parameter), when one is.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// requestError is a bad request found by the HTTP door itself (the body or
// the query), before the gRPC API sees it.
type requestError struct {
	code  int
	field string
	msg   string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(field, format string, args ...any) error {
	return &requestError{code: http.StatusBadRequest, field: field, msg: fmt.Sprintf(format, args...)}
}

// Status maps an error to its HTTP status: the one place where the gRPC
// API's codes (themselves mapped from the registry's and the ACL's
// sentinels by pushsvc) become HTTP statuses. The Consul-compatible door
// (httpapi/consul) uses it too.
func Status(err error) int {
	var re *requestError
	if errors.As(err, &re) {
		return re.code
	}
	switch status.Code(err) {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.FailedPrecondition, codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Canceled:
		return 499 // the client went away; nobody reads it
	case codes.Unimplemented:
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

// writeError writes err as an errorBody with its status.
func (a *API) writeError(w http.ResponseWriter, err error) {
	code := Status(err)
	body := errorBody{Error: err.Error()}
	var re *requestError
	if errors.As(err, &re) {
		body.Field = re.field
	} else if st, ok := status.FromError(err); ok {
		body.Error, body.Field = st.Message(), pushsvc.FieldOf(err)
	}
	if code == http.StatusInternalServerError {
		a.log.Error("internal error", "err", err)
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // a client that went away is not an error of ours
}

// decodeBody decodes r's JSON body into v: at most max bytes (413), one
// JSON object, no field v does not have and every value of the field's type
// (400 naming the field).
func decodeBody(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	if r.ContentLength > max {
		return &requestError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("httpapi: the body is %d bytes; at most %d are accepted", r.ContentLength, max)}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, max))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = badRequest("", "httpapi: the body holds more than one JSON value")
		}
	}
	if err == nil {
		return nil
	}
	var (
		tooBig  *http.MaxBytesError
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
		re      *requestError
	)
	switch {
	case errors.As(err, &re):
		return err
	case errors.As(err, &tooBig):
		return &requestError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("httpapi: the body is over %d bytes", max)}
	case errors.Is(err, io.EOF):
		return badRequest("", "httpapi: the body is empty; it must be a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "httpapi: malformed JSON: the body ends early")
	case errors.As(err, &syntax):
		return badRequest("", "httpapi: malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return badRequest("", "httpapi: the body must be a JSON object, not %s", typeErr.Value)
		}
		return badRequest(field, "httpapi: %s must be a JSON %s, not %s", field, jsonType(typeErr.Type.Kind().String()), typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest(name, "httpapi: unknown field %q", name)
	}
	return badRequest("", "httpapi: bad body: %v", err)
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "map", "struct":
		return "object"
	case "slice", "array":
		return "array"
	}
	return "number (" + kind + ")"
}

// statusOf returns a gRPC status error's message.
func statusOf(err error) (string, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return "", false
	}
	return st.Message(), true
}
