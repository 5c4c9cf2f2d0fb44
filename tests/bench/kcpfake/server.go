package main

// The wire: what a kcp shard answers frontgate's index.fromKcp (lists paged with limit and
// continue, watches as newline-delimited JSON events in a chunked response, BOOKMARKs, 410 for a
// resourceVersion or continue token that is gone) and, on every other path, what a shard answers
// a forwarded request: a small JSON document naming the shard and the path it got.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

var jsonCT = []string{"application/json"}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	body, _ := json.Marshal(map[string]any{"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code})
	w.Header()["Content-Type"] = jsonCT
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}

func (s *shard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	res := ""
	switch r.URL.Path {
	case lcPath:
		res = "logicalclusters"
	case shardPath:
		if s.shards != nil {
			res = "shards"
		}
	}
	if res == "" {
		s.forward(w, r)
		return
	}
	if r.Method != http.MethodGet {
		writeStatus(w, 405, "MethodNotAllowed", "only GET here")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.f.token {
		writeStatus(w, 401, "Unauthorized", "Unauthorized")
		return
	}
	if r.URL.Query().Get("watch") == "true" {
		s.watch(w, r, res)
	} else {
		s.list(w, r, res)
	}
}

func jsonString(b []byte, s string) []byte {
	if strings.ContainsAny(s, "\"\\\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f") {
		q, _ := json.Marshal(s)
		return append(b, q...)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// forward: a shard's answer to a request frontgate forwarded (the benchmark's workload).
func (s *shard) forward(w http.ResponseWriter, r *http.Request) {
	s.forwarded.Add(1)
	b := make([]byte, 0, 192)
	b = append(b, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":200,"shard":`...)
	b = jsonString(b, s.name)
	b = append(b, `,"path":`...)
	b = jsonString(b, r.URL.RequestURI())
	b = append(b, "}\n"...)
	h := w.Header()
	h["Content-Type"] = jsonCT
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.Write(b)
}

type contToken struct {
	V     string `json:"v"`
	RV    uint64 `json:"rv"`
	ID    uint64 `json:"id"`
	Start int    `json:"start"`
}

func (s *shard) list(w http.ResponseWriter, r *http.Request, res string) {
	s.lists.Add(1)
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	cont := q.Get("continue")
	var sn *snapshot
	var id uint64
	start := 0
	if cont == "" {
		type kv struct {
			k string
			b []byte
		}
		var all []kv
		s.mu.Lock()
		rv := s.rv
		if res == "shards" {
			for i, b := range s.shards {
				all = append(all, kv{strconv.Itoa(i), b})
			}
		} else {
			all = make([]kv, 0, len(s.lcs))
			for k, v := range s.lcs {
				all = append(all, kv{k, v.body})
			}
		}
		s.mu.Unlock()
		sort.Slice(all, func(i, j int) bool { return all[i].k < all[j].k }) // etcd's key order
		sn = &snapshot{items: make([][]byte, len(all)), rv: rv, made: time.Now()}
		for i := range all {
			sn.items[i] = all[i].b
		}
		if limit > 0 && len(sn.items) > limit {
			id = s.f.nextSnap.Add(1)
			s.mu.Lock()
			s.snaps[id] = sn
			s.mu.Unlock()
		}
	} else {
		var t contToken
		raw, err := base64.RawURLEncoding.DecodeString(cont)
		if err == nil {
			err = json.Unmarshal(raw, &t)
		}
		if err != nil {
			writeStatus(w, 400, "BadRequest", "continue key is not valid: "+err.Error())
			return
		}
		s.mu.Lock()
		sn = s.snaps[t.ID]
		s.mu.Unlock()
		if sn == nil {
			writeStatus(w, 410, "Expired", "The provided continue parameter is too old to display a consistent "+
				"list result. You can start a new list without the continue parameter.")
			return
		}
		id, start = t.ID, t.Start
		if start > len(sn.items) {
			start = len(sn.items)
		}
	}
	end := len(sn.items)
	if limit > 0 && start+limit < end {
		end = start + limit
	}
	size := 256
	for _, it := range sn.items[start:end] {
		size += len(it) + 1
	}
	kind := "LogicalClusterList"
	if res == "shards" {
		kind = "ShardList"
	}
	b := bytes.NewBuffer(make([]byte, 0, size))
	b.WriteString(`{"apiVersion":"core.kcp.io/v1alpha1","items":[`)
	for i, it := range sn.items[start:end] {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(it)
	}
	b.WriteString(`],"kind":"` + kind + `","metadata":{`)
	if end < len(sn.items) {
		t, _ := json.Marshal(contToken{V: "meta.k8s.io/v1", RV: sn.rv, ID: id, Start: end})
		b.WriteString(`"continue":"` + base64.RawURLEncoding.EncodeToString(t) + `","remainingItemCount":` +
			strconv.Itoa(len(sn.items)-end) + ",")
	} else if id != 0 {
		s.mu.Lock()
		delete(s.snaps, id)
		s.mu.Unlock()
	}
	b.WriteString(`"resourceVersion":"` + strconv.FormatUint(sn.rv, 10) + `"}}` + "\n")
	h := w.Header()
	h["Content-Type"] = jsonCT
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.Write(b.Bytes())
}

func (s *shard) watch(w http.ResponseWriter, r *http.Request, res string) {
	s.watchesServed.Add(1)
	q := r.URL.Query()
	rv, _ := strconv.ParseUint(q.Get("resourceVersion"), 10, 64)
	secs, _ := strconv.Atoi(q.Get("timeoutSeconds"))
	if secs <= 0 {
		secs = 1800
	}
	wt := &watcher{ch: make(chan []byte, s.f.watchBuf), bookmarks: q.Get("allowWatchBookmarks") == "true"}
	m, log := s.lcW, &s.lcLog
	if res == "shards" {
		m, log = s.shW, &s.shLog
	}
	var replay [][]byte
	ok := true
	s.mu.Lock()
	if rv != 0 { // "" and "0": from now on (frontgate always lists first)
		replay, ok = log.since(rv)
	}
	if ok {
		m[wt] = struct{}{}
	}
	s.mu.Unlock()
	h := w.Header()
	h["Content-Type"] = jsonCT
	h.Set("Cache-Control", "no-cache, private")
	w.WriteHeader(200) // no Content-Length: chunked
	fl := w.(http.Flusher)
	if !ok {
		// what kcp sends for a compacted resourceVersion: 200 and an ERROR event with a 410 Status
		s.expired.Add(1)
		w.Write([]byte(`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},` +
			`"status":"Failure","message":"too old resource version: ` + strconv.FormatUint(rv, 10) +
			`","reason":"Expired","code":410}}` + "\n"))
		fl.Flush()
		return
	}
	defer func() {
		s.mu.Lock()
		if !wt.kicked {
			delete(m, wt)
		}
		s.mu.Unlock()
	}()
	fl.Flush()
	for _, line := range replay {
		w.Write(line)
	}
	if len(replay) > 0 {
		fl.Flush()
	}
	timer := time.NewTimer(time.Duration(secs) * time.Second)
	defer timer.Stop()
	done := r.Context().Done()
	for {
		select {
		case line, open := <-wt.ch:
			if !open {
				return
			}
			if _, err := w.Write(line); err != nil {
				return
			}
			for more := true; more; { // what else is queued goes out in the same flush
				select {
				case l, open := <-wt.ch:
					if !open {
						fl.Flush()
						return
					}
					w.Write(l)
				default:
					more = false
				}
			}
			fl.Flush()
			s.lastFlushNs.Store(time.Now().UnixNano())
		case <-timer.C:
			return // the server ends the watch; frontgate resumes from its resourceVersion
		case <-done:
			return
		}
	}
}

// pendingWatchEvents: events queued to this shard's logical-cluster watches, not yet taken.
func (s *shard) pendingWatchEvents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for w := range s.lcW {
		n += len(w.ch)
	}
	return n
}
