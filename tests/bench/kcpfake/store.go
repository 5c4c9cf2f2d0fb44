package main

// The objects of one fake kcp shard: its LogicalClusters (and, on the root shard, the Shards),
// rendered once per change as kcp would send them, the event log a watch resumes from, the
// open watches and the list snapshots that continue tokens point into.

import (
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

const (
	lcPath    = "/clusters/*/apis/core.kcp.io/v1alpha1/logicalclusters"
	shardPath = "/clusters/root/apis/core.kcp.io/v1alpha1/shards"
)

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// ws is one LogicalCluster.
type ws struct {
	cluster, path, typ string
	parent, name       string // spec.owner: the parent's cluster and the Workspace's name
	shard              *shard
	pos                int  // index in shard.pick, -1 when not pickable
	cpos               int  // index in shard.chd when churned
	reserved           bool // never deleted or modified (the throughput target, root, orgs)
	churned            bool // added by the churn
	gen                int  // status changes so far
	seed               uint64
	body               []byte
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// clusterName: 16 characters of [0-9a-z], as kcp's logical cluster names look.
func clusterName(seed uint64) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 16)
	x := splitmix(seed)
	for i := range b {
		if i == 8 {
			x = splitmix(x)
		}
		b[i] = digits[x%36]
		x /= 36
	}
	return string(b)
}

func uid(seed uint64) string {
	a, b := splitmix(seed^0x5555), splitmix(seed^0xaaaa)
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", uint32(a>>32), uint16(a>>16), uint16(a),
		uint16(b>>48), b&0xffffffffffff)
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// render: the object as kcp v0.28 serves it (full), or only what frontgate reads (lean).
func (w *ws) render(rv uint64, lean bool) []byte {
	seed := w.seed
	pathAnn := ""
	if w.path != "" {
		pathAnn = fmt.Sprintf(`,"kcp.io/path":%q`, w.path)
	}
	if lean {
		return fmt.Appendf(nil, `{"apiVersion":"core.kcp.io/v1alpha1","kind":"LogicalCluster","metadata":`+
			`{"annotations":{"internal.tenancy.kcp.io/type":%q,"kcp.io/cluster":%q%s},"name":"cluster",`+
			`"resourceVersion":"%d"},"status":{"phase":"Ready"}}`, w.typ, w.cluster, pathAnn, rv)
	}
	changed := stamp(epoch.Add(time.Duration(w.gen) * time.Second))
	owner := ""
	if w.parent != "" {
		owner = fmt.Sprintf(`"owner":{"apiVersion":"tenancy.kcp.io/v1alpha1","cluster":%q,"name":%q,`+
			`"resource":"workspaces","uid":%q}`, w.parent, w.name, uid(seed^7))
	}
	return fmt.Appendf(nil, `{"apiVersion":"core.kcp.io/v1alpha1","kind":"LogicalCluster","metadata":{`+
		`"annotations":{"internal.tenancy.kcp.io/type":%q,"kcp.io/cluster":%q%s,`+
		`"tenancy.kcp.io/owner":"{\"username\":\"user-%d\",\"groups\":[\"system:authenticated\"]}"},`+
		`"creationTimestamp":"%s","finalizers":["core.kcp.io/logicalcluster-deletion"],"generation":1,`+
		`"managedFields":[{"apiVersion":"core.kcp.io/v1alpha1","fieldsType":"FieldsV1","fieldsV1":`+
		`{"f:metadata":{"f:annotations":{".":{},"f:internal.tenancy.kcp.io/type":{},"f:kcp.io/path":{},`+
		`"f:tenancy.kcp.io/owner":{}},"f:finalizers":{".":{},"v:\"core.kcp.io/logicalcluster-deletion\"":{}}},`+
		`"f:spec":{"f:owner":{}}},"manager":"kcp","operation":"Update","time":"%s"},`+
		`{"apiVersion":"core.kcp.io/v1alpha1","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:URL":{},`+
		`"f:conditions":{},"f:phase":{}}},"manager":"kcp","operation":"Update","subresource":"status",`+
		`"time":"%s"}],"name":"cluster","resourceVersion":"%d","uid":%q},"spec":{%s},"status":{`+
		`"URL":"https://%s.kcp.example:6443/clusters/%s","conditions":[{"lastTransitionTime":"%s",`+
		`"status":"True","type":"WorkspaceInitialized"}],"phase":"Ready"}}`,
		w.typ, w.cluster, pathAnn, seed%1000, stamp(epoch), stamp(epoch), changed, rv, uid(seed), owner,
		w.shard.name, w.cluster, changed)
}

type event struct {
	rv   uint64
	line []byte
}

// evlog: the recent events of one resource, for watches that resume from a resourceVersion.
type evlog struct {
	ev        []event
	compacted uint64 // events up to this resourceVersion are gone (a watch from before gets 410)
	max       int
}

func (l *evlog) add(rv uint64, line []byte) {
	l.ev = append(l.ev, event{rv, line})
	if len(l.ev) > l.max {
		half := len(l.ev) / 2
		l.compacted = l.ev[half-1].rv
		l.ev = append([]event(nil), l.ev[half:]...)
	}
}

// since: the events after rv, or ok=false when some of them were compacted away.
func (l *evlog) since(rv uint64) ([][]byte, bool) {
	if rv < l.compacted {
		return nil, false
	}
	i := sort.Search(len(l.ev), func(i int) bool { return l.ev[i].rv > rv })
	out := make([][]byte, 0, len(l.ev)-i)
	for _, e := range l.ev[i:] {
		out = append(out, e.line)
	}
	return out, true
}

type watcher struct {
	ch        chan []byte
	bookmarks bool
	kicked    bool // ch closed: too slow
}

type snapshot struct {
	items [][]byte
	rv    uint64
	made  time.Time
}

type shard struct {
	f      *fake
	idx    int
	name   string
	url    string
	mu     sync.Mutex
	rv     uint64
	lcs    map[string]*ws
	pick   []*ws // the workspaces a deletion, modification or sample may pick
	chd    []*ws // those of them the churn added
	lcLog  evlog
	shLog  evlog
	lcW    map[*watcher]struct{}
	shW    map[*watcher]struct{}
	snaps  map[uint64]*snapshot
	shards [][]byte // the root shard: the Shard objects

	lists, watchesServed, forwarded, events, kicked, expired atomic.Int64
	lastFlushNs                                              atomic.Int64
}

func newShard(f *fake, idx int, name, url string) *shard {
	return &shard{f: f, idx: idx, name: name, url: url, rv: uint64(1000 + 17*idx),
		lcs: map[string]*ws{}, lcW: map[*watcher]struct{}{}, shW: map[*watcher]struct{}{},
		snaps: map[uint64]*snapshot{}, lcLog: evlog{max: f.logMax}, shLog: evlog{max: f.logMax}}
}

// put adds or replaces w without an event (the data before frontgate starts). Holds mu.
func (s *shard) putQuiet(w *ws) {
	s.rv++
	w.shard = s
	w.body = w.render(s.rv, s.f.lean)
	s.lcs[w.cluster] = w
	w.pos = -1
	if !w.reserved {
		w.pos = len(s.pick)
		s.pick = append(s.pick, w)
	}
	if w.churned {
		w.cpos = len(s.chd)
		s.chd = append(s.chd, w)
	}
}

func (s *shard) unpick(w *ws) {
	if w.pos < 0 {
		return
	}
	last := s.pick[len(s.pick)-1]
	s.pick[w.pos] = last
	last.pos = w.pos
	s.pick = s.pick[:len(s.pick)-1]
	w.pos = -1
	if w.churned {
		last := s.chd[len(s.chd)-1]
		s.chd[w.cpos] = last
		last.cpos = w.cpos
		s.chd = s.chd[:len(s.chd)-1]
	}
}

// broadcast: one event to every watch of the resource. Holds mu.
func (s *shard) broadcast(ws map[*watcher]struct{}, log *evlog, rv uint64, typ string, obj []byte) {
	line := make([]byte, 0, len(obj)+32)
	line = append(line, `{"type":"`...)
	line = append(line, typ...)
	line = append(line, `","object":`...)
	line = append(line, obj...)
	line = append(line, "}\n"...)
	log.add(rv, line)
	s.events.Add(1)
	for w := range ws {
		select {
		case w.ch <- line:
		default: // a watch that does not keep up is ended, as kube's watch cache does
			close(w.ch)
			w.kicked = true
			delete(ws, w)
			s.kicked.Add(1)
		}
	}
}

func (s *shard) add(w *ws) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putQuiet(w)
	s.broadcast(s.lcW, &s.lcLog, s.rv, "ADDED", w.body)
}

func (s *shard) modify(w *ws) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lcs[w.cluster] != w {
		return
	}
	s.rv++
	w.gen++
	w.body = w.render(s.rv, s.f.lean)
	s.broadcast(s.lcW, &s.lcLog, s.rv, "MODIFIED", w.body)
}

func (s *shard) del(w *ws) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lcs[w.cluster] != w {
		return
	}
	delete(s.lcs, w.cluster)
	s.unpick(w)
	s.rv++
	w.body = w.render(s.rv, s.f.lean) // kube sends the last state at the deletion's resourceVersion
	s.broadcast(s.lcW, &s.lcLog, s.rv, "DELETED", w.body)
}

// randomPick: a pickable workspace, or nil.
func (s *shard) randomPick(r *rand.Rand, churned bool) *ws {
	s.mu.Lock()
	defer s.mu.Unlock()
	if churned && len(s.chd) > 0 {
		return s.chd[r.Intn(len(s.chd))]
	}
	if len(s.pick) == 0 {
		return nil
	}
	return s.pick[r.Intn(len(s.pick))]
}

// bookmarks: every interval, each watch that asked for them gets the current resourceVersion.
func (s *shard) bookmarks(every time.Duration) {
	t := time.NewTicker(every)
	for range t.C {
		s.mu.Lock()
		for kind, m := range map[string]map[*watcher]struct{}{"LogicalCluster": s.lcW, "Shard": s.shW} {
			line := []byte(fmt.Sprintf(`{"type":"BOOKMARK","object":{"kind":"%s","apiVersion":"core.kcp.io/v1alpha1",`+
				`"metadata":{"resourceVersion":"%d","creationTimestamp":null}}}`+"\n", kind, s.rv))
			for w := range m {
				if !w.bookmarks {
					continue
				}
				select {
				case w.ch <- line:
				default:
				}
			}
		}
		// list snapshots nobody continued for a minute are dropped (their token expires)
		for id, sn := range s.snaps {
			if time.Since(sn.made) > time.Minute {
				delete(s.snaps, id)
			}
		}
		s.mu.Unlock()
	}
}
