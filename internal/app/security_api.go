package app

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/store"
)

// securityAPI serves the alerts, the security audit log and the IP blocks
// to admins (the node's Authorized wrapper checks the token):
//
//	GET    /api/v1/alerts?rule=&ip=&user=&since=&before=&limit=
//	GET    /api/v1/audit?type=&ip=&user=&since=&before=&limit=
//	GET    /api/v1/blocks
//	DELETE /api/v1/blocks/{ip}
//
// Lists are newest first; pass the response's next_before as before for
// the next page.
func (a *App) securityAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/alerts", func(w http.ResponseWriter, r *http.Request) {
		f, ok := filter(w, r)
		if !ok {
			return
		}
		list, err := a.store.Alerts(r.Context(), f)
		if err != nil {
			a.log.Error().Err(err).Msg("read alerts")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "database unavailable", "code": "unavailable"})
			return
		}
		items := make([]map[string]any, len(list))
		for i, al := range list {
			var ids []string
			_ = json.Unmarshal([]byte(al.EventIDs), &ids)
			items[i] = map[string]any{
				"id": al.ID, "rule": al.Rule, "severity": al.Severity, "subject": al.Subject, "summary": al.Summary,
				"count": al.Count, "first_seen": al.FirstSeen, "last_seen": al.LastSeen, "event_ids": ids, "action": al.Action,
			}
		}
		page(w, items, len(list) == f.Limit, func() (time.Time, string) { return list[len(list)-1].FirstSeen, list[len(list)-1].ID })
	})
	mux.HandleFunc("GET /api/v1/audit", func(w http.ResponseWriter, r *http.Request) {
		f, ok := filter(w, r)
		if !ok {
			return
		}
		list, err := a.store.AuditLogSecurity(r.Context(), f)
		if err != nil {
			a.log.Error().Err(err).Msg("read audit log")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "database unavailable", "code": "unavailable"})
			return
		}
		items := make([]map[string]any, len(list))
		for i, rec := range list {
			items[i] = map[string]any{
				"id": rec.ID, "type": rec.Type, "time": rec.OccurredAt, "ip": rec.IP, "user_id": rec.UserID,
				"session_id": rec.SessionID, "namespace": rec.Namespace, "code": rec.Code, "data": json.RawMessage(rec.Data),
			}
		}
		page(w, items, len(list) == f.Limit, func() (time.Time, string) { return list[len(list)-1].OccurredAt, list[len(list)-1].ID })
	})
	mux.HandleFunc("GET /api/v1/blocks", func(w http.ResponseWriter, r *http.Request) {
		list, err := a.store.ActiveBlocks(r.Context(), time.Now())
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "database unavailable", "code": "unavailable"})
			return
		}
		if list == nil {
			list = []store.IPBlock{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": list})
	})
	mux.HandleFunc("DELETE /api/v1/blocks/{ip}", func(w http.ResponseWriter, r *http.Request) {
		ip := r.PathValue("ip")
		found, err := a.store.LiftBlock(r.Context(), ip)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "database unavailable", "code": "unavailable"})
			return
		}
		msg, _ := json.Marshal(events.BlockMessage{IP: ip})
		if err := a.nc.Publish(events.Subjects{Prefix: a.cfg.SubjectPrefix}.Ctl(events.CtlUnblock), msg); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "bus unavailable", "code": "unavailable"})
			return
		}
		if !found {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no block for " + ip, "code": "not_found"})
			return
		}
		a.log.Info().Str("ip", ip).Msg("IP block lifted through the API")
		writeJSON(w, http.StatusOK, map[string]any{"ip": ip, "lifted": true})
	})
	return mux
}

// filter reads the list query parameters.
func filter(w http.ResponseWriter, r *http.Request) (store.Filter, bool) {
	q := r.URL.Query()
	f := store.Filter{IP: q.Get("ip"), UserID: q.Get("user"), Rule: q.Get("rule"), Type: q.Get("type"), Limit: 100}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "since must be an RFC 3339 time", "code": "invalid_query"})
			return f, false
		}
		f.Since = t
	}
	if v := q.Get("before"); v != "" {
		// A page cursor: "<RFC 3339 time>,<id>" (next_before), or a time.
		ts, id, _ := strings.Cut(v, ",")
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "before must be a next_before cursor or an RFC 3339 time", "code": "invalid_query"})
			return f, false
		}
		f.Before, f.BeforeID = t, id // a bare time (no id): strictly older entries

	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be 1 to 1000", "code": "invalid_query"})
			return f, false
		}
		f.Limit = n
	}
	return f, true
}

func page(w http.ResponseWriter, items []map[string]any, more bool, last func() (time.Time, string)) {
	out := map[string]any{"items": items}
	if more && len(items) > 0 {
		t, id := last()
		out["next_before"] = t.UTC().Format(time.RFC3339Nano) + "," + id
	}
	writeJSON(w, http.StatusOK, out)
}
