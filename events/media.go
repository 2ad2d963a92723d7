package events

import (
	"encoding/base64"
	"strings"
)

// Media event names (type medianest.media.<name>.v1, subject
// medianest.events.media.<name>).
const (
	MediaDownloadProgress  = "download.progress"
	MediaDownloadCompleted = "download.completed"
	MediaDownloadFailed    = "download.failed"
	MediaDownloadCancelled = "download.cancelled"
	MediaRequestStatus     = "request.status"
	MediaServiceStatus     = "service.status"
	MediaNotification      = "notification.created"
	MediaItemAvailable     = "library.item_available"
)

// ServiceStatusBucket is the key-value bucket of every service's last
// known status (key: [KVKey] of the service id, value: the event's data).
func ServiceStatusBucket(prefix string) string { return StreamName(prefix, "service_status") }

// RequestOwnersBucket maps media requests to their users (key: [KVKey] of
// the request id, value: the user id), so a hub node can let a client
// follow only its own requests.
func RequestOwnersBucket(prefix string) string { return StreamName(prefix, "request_owners") }

// KVKey encodes an id as a key-value key (any id is allowed; keys are not).
func KVKey(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// KVID reverses [KVKey].
func KVID(key string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(key))
	return string(b), err
}
