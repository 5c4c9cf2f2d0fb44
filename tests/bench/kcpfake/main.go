// kcpfake: kcp shards for tests/bench/run's workload (k), speaking the list/watch wire that
// frontgate's index.fromKcp reads (the same as tests/e2e/test_kcp_index.py's in-process shard),
// fast enough that frontgate, not the fake, is what is measured. Standard library only.
//
//	kcpfake serve -ports P0,P1,P2,P3 -ctl PC -token-file F [-workspaces 100000] [-lean]
//	    shard i listens on 127.0.0.1:Pi (0: any port); shard 0 is the root shard ("root"),
//	    which also serves the Shards, each with its own port as baseURL (or -base-urls, e.g. a
//	    proxy in front of them that answers the forwarded requests itself). The logical clusters
//	    are spread over the shards (i mod shards): root, 100 organizations root:org-NNN and
//	    workspaces root:org-NNN:ws-NNNNNN, plus system:admin (which frontgate must not route).
//	    Prints "kcpfake ready {json}" once every port listens. The control port (ctl) answers:
//	      GET  /stats                     counters per shard, as JSON
//	      GET  /target                    the workspace kept out of every change (for wrk)
//	      GET  /sample?n=N                N random workspaces {path, cluster, shard}
//	      POST /delete/plan?n=N&sample=S  picks N workspaces spread over the shards; answers S
//	                                      of them at random and the last to be deleted
//	      POST /delete/go                 sends the planned DELETED events, as fast as it can
//	      GET  /delete                    when the first was sent, the last, and when the watch
//	                                      writers had taken them all (unix ns)
//	      POST /churn/start?rate=R        R events/s spread over the shards, sent every -tick
//	                                      (10 ms) as they fall due: ADDED (a new
//	                                      workspace), MODIFIED (a status change) and DELETED
//	                                      (preferably one the churn added), a third each
//	      POST /churn/stop                stops it; answers what was sent and how late it ran
//	kcpfake probe-sync -fg URL -ctl URL -key K -n 200 -start-ns T
//	    polls frontgate's /readyz until 200, then the sample until every workspace answers 200
//	    with the document of its shard; one JSON line: seconds from T to each
//	kcpfake probe-delete -fg URL -ctl URL -key K -n 10000 -sample 200
//	    plans the deletions, checks the sample routes, starts them and polls until the sample
//	    and the last deleted answer 403; one JSON line: seconds from the first event sent
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type fake struct {
	shards   []*shard
	token    string
	lean     bool
	logMax   int
	watchBuf int
	nextSnap atomic.Uint64
	seed     uint64
	target   *ws
	tick     time.Duration // the churn's pacing

	mu        sync.Mutex // the control's state below
	plan      []*ws
	delFirst  int64
	delDone   int64
	delDrain  int64
	churnStop chan struct{}
	churnDone chan churnStats
	nextChurn int
}

type churnStats struct {
	Sent      int64   `json:"sent"`
	Added     int64   `json:"added"`
	Modified  int64   `json:"modified"`
	Deleted   int64   `json:"deleted"`
	Seconds   float64 `json:"seconds"`
	Rate      float64 `json:"rate"`
	MaxBehind int64   `json:"max_behind"` // most events due but not yet sent at a tick
}

type target struct {
	Path    string `json:"path"`
	Cluster string `json:"cluster"`
	Shard   string `json:"shard"`
}

func tgt(w *ws) target { return target{w.path, w.cluster, w.shard.name} }

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "kcpfake: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		die("usage: kcpfake serve|probe-sync|probe-delete [flags] (see the comment in main.go)")
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "probe-sync":
		probeSync(os.Args[2:])
	case "probe-delete":
		probeDelete(os.Args[2:])
	default:
		die("unknown command %q", os.Args[1])
	}
}

func (f *fake) generate(n int, orgs int) {
	seen := map[string]bool{}
	ns := len(f.shards)
	name := func(i int) (string, uint64) {
		for salt := uint64(0); ; salt++ {
			seed := splitmix(f.seed ^ uint64(i) ^ salt<<40)
			c := clusterName(seed)
			if !seen[c] {
				seen[c] = true
				return c, seed
			}
		}
	}
	if orgs > n-1 {
		orgs = n - 1
	}
	orgCluster := make([]string, orgs+1)
	for i := 0; i < n; i++ {
		w := &ws{pos: -1}
		s := f.shards[i%ns]
		switch {
		case i == 0:
			w.cluster, w.typ, w.reserved, w.seed = "root", "root:root", true, 1
		case i <= orgs:
			w.cluster, w.seed = name(i)
			w.name = fmt.Sprintf("org-%03d", i)
			w.path, w.typ, w.parent, w.reserved = "root:"+w.name, "root:organization", "root", true
			orgCluster[i] = w.cluster
		default:
			o := 1 + i%orgs
			w.cluster, w.seed = name(i)
			w.name = fmt.Sprintf("ws-%06d", i)
			w.path = fmt.Sprintf("root:org-%03d:%s", o, w.name)
			w.typ, w.parent = "root:universal", orgCluster[o]
			w.reserved = i == n-1 // the throughput target
		}
		s.putQuiet(w)
		if i == n-1 {
			f.target = w
		}
	}
	// a cluster kcp hands out that nobody routes to
	sys := &ws{cluster: "system:admin", typ: "root:universal", reserved: true, seed: 2, pos: -1}
	f.shards[0].putQuiet(sys)
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	ports := fs.String("ports", "0,0,0,0", "one port per shard; the first is the root shard")
	ctlPort := fs.Int("ctl", 0, "the control port")
	tokenFile := fs.String("token-file", "", "the bearer token lists and watches must present")
	n := fs.Int("workspaces", 100000, "logical clusters (root and the organizations included)")
	orgs := fs.Int("orgs", 100, "organizations the workspaces sit in")
	lean := fs.Bool("lean", false, "objects with only what frontgate reads (default: as kcp sends them)")
	bookmark := fs.Duration("bookmark", time.Second, "BOOKMARK interval on each watch that asks")
	logMax := fs.Int("log", 1<<18, "events kept per resource for watches that resume")
	watchBuf := fs.Int("watch-buffer", 1<<17, "events queued per watch before it is ended as too slow")
	seed := fs.Uint64("seed", 1, "names and samples")
	tick := fs.Duration("tick", 10*time.Millisecond, "the churn sends what is due every tick")
	baseURLs := fs.String("base-urls", "", "the Shards' baseURLs, comma-separated (default: each shard's own port)")
	fs.Parse(args)
	if *tokenFile == "" {
		die("serve: -token-file is required")
	}
	tok, err := os.ReadFile(*tokenFile)
	if err != nil {
		die("serve: %v", err)
	}
	f := &fake{token: strings.TrimSpace(string(tok)), lean: *lean, logMax: *logMax, watchBuf: *watchBuf, seed: *seed,
		tick: *tick}
	var lns []net.Listener
	for i, p := range strings.Split(*ports, ",") {
		ln, err := net.Listen("tcp", "127.0.0.1:"+p)
		if err != nil {
			die("serve: shard %d: %v", i, err)
		}
		lns = append(lns, ln)
		name := "root"
		if i > 0 {
			name = fmt.Sprintf("shard-%d", i)
		}
		f.shards = append(f.shards, newShard(f, i, name, "http://"+ln.Addr().String()))
	}
	ctl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *ctlPort))
	if err != nil {
		die("serve: control: %v", err)
	}
	if *baseURLs != "" {
		u := strings.Split(*baseURLs, ",")
		if len(u) != len(f.shards) {
			die("serve: -base-urls names %d URLs for %d shards", len(u), len(f.shards))
		}
		for i, s := range f.shards {
			s.url = u[i]
		}
	}
	t0 := time.Now()
	root := f.shards[0]
	for i, s := range f.shards {
		root.rv++
		root.shards = append(root.shards, []byte(fmt.Sprintf(`{"apiVersion":"core.kcp.io/v1alpha1","kind":"Shard",`+
			`"metadata":{"creationTimestamp":"%s","name":"%s","resourceVersion":"%d","uid":"%s"},"spec":`+
			`{"baseURL":"%s","externalURL":"https://kcp.example:6443","virtualWorkspaceURL":"%s"},"status":`+
			`{"conditions":[{"lastTransitionTime":"%s","status":"True","type":"Ready"}]}}`,
			stamp(epoch), s.name, root.rv, uid(uint64(900+i)), s.url, s.url, stamp(epoch))))
	}
	f.generate(*n, *orgs)
	built := time.Since(t0)
	for i, s := range f.shards {
		srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
		go func(ln net.Listener) { die("serve: %v", srv.Serve(ln)) }(lns[i])
		go s.bookmarks(*bookmark)
	}
	go func() { die("control: %v", http.Serve(ctl, f.control())) }()
	ready := map[string]any{"root": root.url, "ctl": ctl.Addr().String(), "workspaces": *n,
		"build_s": built.Seconds(), "target": tgt(f.target)}
	var urls []string
	for _, s := range f.shards {
		urls = append(urls, s.url)
	}
	ready["shards"] = urls
	j, _ := json.Marshal(ready)
	fmt.Printf("kcpfake ready %s\n", j)
	select {}
}

func reply(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

func (f *fake) control() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		var out []map[string]any
		for _, s := range f.shards {
			s.mu.Lock()
			st := map[string]any{"name": s.name, "url": s.url, "resource_version": s.rv, "logical_clusters": len(s.lcs),
				"lc_watches": len(s.lcW), "shard_watches": len(s.shW)}
			s.mu.Unlock()
			st["lists"], st["watches"], st["forwarded"] = s.lists.Load(), s.watchesServed.Load(), s.forwarded.Load()
			st["events"], st["kicked"], st["expired"] = s.events.Load(), s.kicked.Load(), s.expired.Load()
			out = append(out, st)
		}
		reply(w, map[string]any{"shards": out})
	})
	mux.HandleFunc("/target", func(w http.ResponseWriter, r *http.Request) { reply(w, tgt(f.target)) })
	mux.HandleFunc("/sample", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		rnd := rand.New(rand.NewSource(time.Now().UnixNano()))
		var out []target
		for i := 0; i < n; i++ {
			if w := f.shards[i%len(f.shards)].randomPick(rnd, false); w != nil {
				out = append(out, tgt(w))
			}
		}
		reply(w, out)
	})
	mux.HandleFunc("/delete/plan", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		ns, _ := strconv.Atoi(r.URL.Query().Get("sample"))
		rnd := rand.New(rand.NewSource(int64(f.seed) + 7))
		per := make([][]*ws, len(f.shards))
		for i, s := range f.shards {
			want := n / len(f.shards)
			if i < n%len(f.shards) {
				want++
			}
			s.mu.Lock()
			c := append([]*ws(nil), s.pick...)
			s.mu.Unlock()
			if want > len(c) {
				want = len(c)
			}
			for j := 0; j < want; j++ { // a partial shuffle: want distinct ones
				k := j + rnd.Intn(len(c)-j)
				c[j], c[k] = c[k], c[j]
			}
			per[i] = c[:want]
		}
		var plan []*ws
		for j := 0; len(plan) < n; j++ { // round robin over the shards
			added := false
			for i := range per {
				if j < len(per[i]) {
					plan = append(plan, per[i][j])
					added = true
				}
			}
			if !added {
				break
			}
		}
		f.mu.Lock()
		f.plan, f.delFirst, f.delDone, f.delDrain = plan, 0, 0, 0
		f.mu.Unlock()
		var sample []target
		if len(plan) > 0 {
			for _, i := range rnd.Perm(len(plan) - 1) {
				if len(sample) == ns {
					break
				}
				sample = append(sample, tgt(plan[i]))
			}
		}
		out := map[string]any{"n": len(plan), "sample": sample}
		if len(plan) > 0 {
			out["last"] = tgt(plan[len(plan)-1])
		}
		reply(w, out)
	})
	mux.HandleFunc("/delete/go", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		plan := f.plan
		f.plan = nil
		f.mu.Unlock()
		go func() {
			first := time.Now().UnixNano()
			f.mu.Lock()
			f.delFirst = first
			f.mu.Unlock()
			for _, v := range plan {
				v.shard.del(v)
			}
			done := time.Now().UnixNano()
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
				pending := 0
				for _, s := range f.shards {
					pending += s.pendingWatchEvents()
				}
				if pending == 0 {
					break
				}
				time.Sleep(100 * time.Microsecond)
			}
			drained := time.Now().UnixNano()
			f.mu.Lock()
			f.delDone, f.delDrain = done, drained
			f.mu.Unlock()
		}()
		reply(w, map[string]any{"deleting": len(plan)})
	})
	mux.HandleFunc("/delete", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		reply(w, map[string]any{"first_ns": f.delFirst, "done_ns": f.delDone, "drained_ns": f.delDrain})
	})
	mux.HandleFunc("/churn/start", func(w http.ResponseWriter, r *http.Request) {
		rate, _ := strconv.ParseFloat(r.URL.Query().Get("rate"), 64)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.churnStop != nil || rate <= 0 {
			http.Error(w, "churn running or no rate", 409)
			return
		}
		f.churnStop, f.churnDone = make(chan struct{}), make(chan churnStats, 1)
		go f.churn(rate, f.churnStop, f.churnDone)
		reply(w, map[string]any{"rate": rate})
	})
	mux.HandleFunc("/churn/stop", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		stop, done := f.churnStop, f.churnDone
		f.churnStop, f.churnDone = nil, nil
		f.mu.Unlock()
		if stop == nil {
			http.Error(w, "no churn", 409)
			return
		}
		close(stop)
		reply(w, <-done)
	})
	return mux
}

// churn: rate events a second, what is due sent every tick (10 ms: fewer wakeups of the fake,
// which shares the machine with what it measures); event j goes to shard j mod shards and is
// ADDED, MODIFIED or DELETED as j mod 3 says.
func (f *fake) churn(rate float64, stop chan struct{}, done chan churnStats) {
	rnd := rand.New(rand.NewSource(time.Now().UnixNano()))
	var st churnStats
	t0 := time.Now()
	tick := time.NewTicker(f.tick)
	defer tick.Stop()
	ns := int64(len(f.shards))
	for {
		select {
		case <-stop:
			st.Seconds = time.Since(t0).Seconds()
			st.Rate = float64(st.Sent) / st.Seconds
			done <- st
			return
		case now := <-tick.C:
			due := int64(rate * now.Sub(t0).Seconds())
			if due-st.Sent > st.MaxBehind {
				st.MaxBehind = due - st.Sent
			}
			for ; st.Sent < due; st.Sent++ {
				s := f.shards[st.Sent%ns]
				switch st.Sent % 3 {
				case 0:
					f.mu.Lock()
					f.nextChurn++
					id := f.nextChurn
					f.mu.Unlock()
					o := 1 + id%100
					seed := splitmix(f.seed ^ 0xc4a5 ^ uint64(id)<<20)
					nw := &ws{cluster: clusterName(seed), seed: seed, typ: "root:universal", churned: true,
						name: fmt.Sprintf("churn-%07d", id)}
					nw.path = fmt.Sprintf("root:org-%03d:%s", o, nw.name)
					nw.parent = "root"
					s.add(nw)
					st.Added++
				case 1:
					if v := s.randomPick(rnd, false); v != nil {
						s.modify(v)
						st.Modified++
					}
				case 2:
					if v := s.randomPick(rnd, true); v != nil {
						s.del(v)
						st.Deleted++
					}
				}
			}
		}
	}
}
