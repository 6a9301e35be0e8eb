package openclaw

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/fault"
)

// Output schemas. A tool's result is normalized to {content, details}; a
// channel send's to {channel, message_id, details}. redacted is true when
// credential material was found in what the plugin returned and replaced
// with [REDACTED].
const (
	toolOutputSchema = `{
  "type": "object",
  "properties": {
    "content": {
      "type": "array",
      "maxItems": 256,
      "items": {
        "oneOf": [
          {"type": "object", "properties": {"type": {"const": "text"}, "text": {"type": "string"}}, "required": ["type", "text"], "additionalProperties": false},
          {"type": "object", "properties": {"type": {"const": "image"}, "data": {"type": "string", "contentEncoding": "base64"}, "mimeType": {"type": "string", "pattern": "^image/[A-Za-z0-9.+-]+$"}}, "required": ["type", "data", "mimeType"], "additionalProperties": false}
        ]
      }
    },
    "details": {"type": "object"},
    "redacted": {"type": "boolean", "description": "Credential material was found in the plugin's result and replaced with [REDACTED]."}
  },
  "required": ["content", "details"],
  "additionalProperties": false
}`

	sendOutputSchema = `{
  "type": "object",
  "properties": {
    "channel": {"type": "string"},
    "message_id": {"type": "string"},
    "details": {"type": "object"},
    "redacted": {"type": "boolean", "description": "Credential material was found in the plugin's result and replaced with [REDACTED]."}
  },
  "required": ["channel", "message_id", "details"],
  "additionalProperties": false
}`

	sendInputSchema = `{
  "type": "object",
  "properties": {
    "to": {"type": "string", "minLength": 1, "maxLength": 512, "description": "Recipient or conversation id, in the channel's own syntax."},
    "text": {"type": "string", "minLength": 1, "maxLength": 65536, "description": "Message text."}
  },
  "required": ["to", "text"],
  "additionalProperties": false
}`
)

// maxContentItems bounds a tool result's content list.
const maxContentItems = 256

// normalized is a checked, redacted result.
type normalized struct {
	JSON     json.RawMessage
	Redacted bool
}

// decodeResult bounds, redacts and decodes a host's result. redacted
// reports credential material found (in any encoding the redactor knows).
func decodeResult(raw json.RawMessage, red *driverkit.Redactor, max int) (any, bool, error) {
	if len(raw) > max {
		return nil, false, fault.New(fault.ResponseTooLarge, "the plugin's result is %d bytes, over the %d byte cap", len(raw), max)
	}
	found := red.Contains(raw)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, found, fault.Wrap(fault.Validation, err, "the plugin's result is not JSON")
	}
	if found {
		v = red.Value(v)
	}
	return v, found, nil
}

// normalizeTool checks a tool's result against {content[], details} and
// returns it in the tool output schema's shape.
func normalizeTool(raw json.RawMessage, red *driverkit.Redactor, max int) (normalized, error) {
	v, found, err := decodeResult(raw, red, max)
	if err != nil {
		return normalized{}, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return normalized{}, invalidResult("the tool returned %s, not an object {content, details}", jsonKind(v))
	}
	rawContent, ok := obj["content"]
	if !ok {
		return normalized{}, invalidResult("the tool's result has no content list")
	}
	items, ok := rawContent.([]any)
	if !ok {
		return normalized{}, invalidResult("the tool's content is %s, not a list", jsonKind(rawContent))
	}
	if len(items) > maxContentItems {
		return normalized{}, invalidResult("the tool returned %d content items, over %d", len(items), maxContentItems)
	}
	content := make([]any, 0, len(items))
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return normalized{}, invalidResult("content[%d] is %s, not an object", i, jsonKind(it))
		}
		switch t, _ := m["type"].(string); t {
		case "text":
			text, ok := m["text"].(string)
			if !ok {
				return normalized{}, invalidResult("content[%d] is a text item without a text string", i)
			}
			content = append(content, map[string]any{"type": "text", "text": text})
		case "image":
			data, ok1 := m["data"].(string)
			mime, ok2 := m["mimeType"].(string)
			if !ok1 || !ok2 || !strings.HasPrefix(mime, "image/") {
				return normalized{}, invalidResult("content[%d] is an image item without base64 data and an image/* mimeType", i)
			}
			if _, err := base64.StdEncoding.DecodeString(data); err != nil {
				return normalized{}, invalidResult("content[%d] is an image item whose data is not base64", i)
			}
			content = append(content, map[string]any{"type": "image", "data": data, "mimeType": mime})
		default:
			return normalized{}, invalidResult("content[%d] has type %q; only text and image items are accepted", i, t)
		}
	}
	details, err := detailsOf(obj["details"])
	if err != nil {
		return normalized{}, err
	}
	out := map[string]any{"content": content, "details": details}
	if found {
		out["redacted"] = true
	}
	return encodeResult(out, found, max)
}

// normalizeSend checks a channel's delivery result {channel, messageId, …}.
func normalizeSend(raw json.RawMessage, channel string, red *driverkit.Redactor, max int) (normalized, error) {
	v, found, err := decodeResult(raw, red, max)
	if err != nil {
		return normalized{}, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return normalized{}, invalidResult("the channel's send returned %s, not an object {channel, messageId}", jsonKind(v))
	}
	var id string
	switch x := obj["messageId"].(type) {
	case string:
		id = x
	case json.Number:
		id = x.String()
	default:
		return normalized{}, invalidResult("the channel's send result has no messageId")
	}
	ch, _ := obj["channel"].(string)
	if ch == "" {
		ch = channel
	}
	details := map[string]any{}
	for k, e := range obj {
		if k != "channel" && k != "messageId" {
			details[k] = e
		}
	}
	out := map[string]any{"channel": ch, "message_id": id, "details": details}
	if found {
		out["redacted"] = true
	}
	return encodeResult(out, found, max)
}

func detailsOf(v any) (map[string]any, error) {
	switch x := v.(type) {
	case nil:
		return map[string]any{}, nil
	case map[string]any:
		return x, nil
	default:
		return nil, invalidResult("the tool's details are %s, not an object", jsonKind(v))
	}
}

func encodeResult(v any, found bool, max int) (normalized, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return normalized{}, fault.Wrap(fault.Validation, err, "the plugin's result cannot be encoded")
	}
	out := bytes.TrimRight(buf.Bytes(), "\n")
	if len(out) > max {
		return normalized{}, fault.New(fault.ResponseTooLarge, "the plugin's result is %d bytes, over the %d byte cap", len(out), max)
	}
	return normalized{JSON: out, Redacted: found}, nil
}

func invalidResult(format string, args ...any) error {
	return fault.New(fault.Validation, "the plugin's result does not match the declared shape: %s", fmt.Sprintf(format, args...))
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
