package main

// The clients of workload (k): they ask frontgate, as a user would, whether sampled workspaces
// route (the shard's own document, from the right shard, for the right logical cluster) or are
// refused (403), and time when each first did.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

type prober struct {
	fg, ctl, key string
	c            *http.Client
	workers      int
}

func newProber(fs *flag.FlagSet, args []string) *prober {
	p := &prober{}
	fs.StringVar(&p.fg, "fg", "", "frontgate's base URL")
	fs.StringVar(&p.ctl, "ctl", "", "the fake's control URL")
	fs.StringVar(&p.key, "key", "", "a static API key frontgate admits")
	fs.IntVar(&p.workers, "workers", 8, "requests in flight")
	return p
}

func (p *prober) init() {
	if p.fg == "" || p.ctl == "" || p.key == "" {
		die("-fg, -ctl and -key are required")
	}
	p.c = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64,
		DisableCompression: true}}
}

func (p *prober) ctlCall(method, path string, out any) {
	req, _ := http.NewRequest(method, p.ctl+path, nil)
	resp, err := p.c.Do(req)
	if err != nil {
		die("control %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		die("control %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		die("control %s: %v", path, err)
	}
}

type outcome struct {
	at     []int64     // unix ns each target first answered as wanted; 0: never
	status map[int]int // every status seen, counted
	wrong  int         // 200s that were not this workspace's shard document
	sample string      // one wrong answer, for the log
}

// until polls the targets not yet as wanted (200: the document of the target's shard for its
// logical cluster; else that status) until all are or the deadline passes.
func (p *prober) until(ts []target, want int, deadline time.Time) outcome {
	o := outcome{at: make([]int64, len(ts)), status: map[int]int{}}
	pending := make([]int, len(ts))
	for i := range pending {
		pending[i] = i
	}
	var mu sync.Mutex
	for len(pending) > 0 && time.Now().Before(deadline) {
		next := make(chan int)
		var still []int
		var wg sync.WaitGroup
		for k := 0; k < p.workers; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					t := ts[i]
					req, _ := http.NewRequest("GET", p.fg+"/clusters/"+t.Path+"/api", nil)
					req.Header.Set("Authorization", "Bearer "+p.key)
					code, body := -1, []byte(nil)
					if resp, err := p.c.Do(req); err == nil {
						body, _ = io.ReadAll(resp.Body)
						resp.Body.Close()
						code = resp.StatusCode
					}
					now := time.Now().UnixNano()
					ok := code == want
					mu.Lock()
					o.status[code]++
					if ok && want == 200 && (!bytes.Contains(body, []byte(`"shard":"`+t.Shard+`"`)) ||
						!bytes.Contains(body, []byte(`"path":"/clusters/`+t.Cluster+`/api"`))) {
						ok = false
						o.wrong++
						if o.sample == "" {
							o.sample = fmt.Sprintf("%s answered %s", t.Path, body)
						}
					}
					if ok {
						o.at[i] = now
					} else {
						still = append(still, i)
					}
					mu.Unlock()
				}
			}()
		}
		for _, i := range pending {
			next <- i
		}
		close(next)
		wg.Wait()
		pending = still
		if len(pending) > 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	return o
}

func last(at []int64) (int64, int) {
	var m int64
	missing := 0
	for _, t := range at {
		if t == 0 {
			missing++
		}
		if t > m {
			m = t
		}
	}
	return m, missing
}

func emit(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func probeSync(args []string) {
	fs := flag.NewFlagSet("probe-sync", flag.ExitOnError)
	p := newProber(fs, args)
	n := fs.Int("n", 200, "workspaces sampled")
	startNs := fs.Int64("start-ns", 0, "when frontgate was started (unix ns)")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after")
	fs.Parse(args)
	p.init()
	var sample []target
	p.ctlCall("GET", fmt.Sprintf("/sample?n=%d", *n), &sample)
	deadline := time.Now().Add(*timeout)
	var ready int64
	for time.Now().Before(deadline) {
		if resp, err := p.c.Get(p.fg + "/readyz"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ready = time.Now().UnixNano()
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	out := map[string]any{"sample": len(sample)}
	if ready == 0 {
		out["timed_out"] = "readyz"
		emit(out)
		return
	}
	o := p.until(sample, 200, deadline)
	routed, missing := last(o.at)
	if missing > 0 {
		routed = time.Now().UnixNano() // gave up: at least this long
	}
	out["ready_s"] = float64(ready-*startNs) / 1e9
	out["routed_s"] = float64(routed-*startNs) / 1e9
	out["not_routed"], out["statuses"], out["wrong"] = missing, o.status, o.wrong
	if missing > 0 {
		out["timed_out"] = "routes"
	}
	if o.sample != "" {
		out["wrong_sample"] = o.sample
	}
	emit(out)
}

func probeDelete(args []string) {
	fs := flag.NewFlagSet("probe-delete", flag.ExitOnError)
	p := newProber(fs, args)
	n := fs.Int("n", 10000, "workspaces deleted")
	ns := fs.Int("sample", 200, "deleted workspaces polled (and the last one deleted)")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after")
	fs.Parse(args)
	p.init()
	var plan struct {
		N      int      `json:"n"`
		Sample []target `json:"sample"`
		Last   target   `json:"last"`
	}
	p.ctlCall("POST", fmt.Sprintf("/delete/plan?n=%d&sample=%d", *n, *ns), &plan)
	ts := append(plan.Sample, plan.Last)
	out := map[string]any{"n": plan.N, "sample": len(ts)}
	// they route before
	if pre := p.until(ts, 200, time.Now().Add(10*time.Second)); true {
		if _, missing := last(pre.at); missing > 0 {
			out["error"] = fmt.Sprintf("%d of the sample did not route before the deletions (statuses %v) %s",
				missing, pre.status, pre.sample)
			emit(out)
			os.Exit(1)
		}
	}
	var started map[string]any
	p.ctlCall("POST", "/delete/go", &started)
	o := p.until(ts, 403, time.Now().Add(*timeout))
	var d struct {
		First   int64 `json:"first_ns"`
		Done    int64 `json:"done_ns"`
		Drained int64 `json:"drained_ns"`
	}
	for i := 0; i < 300; i++ { // the sender notes its end after the last event
		p.ctlCall("GET", "/delete", &d)
		if d.Drained != 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	all, missing := last(o.at)
	lastAt := o.at[len(o.at)-1]
	if missing > 0 { // gave up: at least this long
		all = time.Now().UnixNano()
		if lastAt == 0 {
			lastAt = all
		}
	}
	out["reflected_s"] = float64(all-d.First) / 1e9
	out["last_deleted_s"] = float64(lastAt-d.First) / 1e9
	out["sent_s"] = float64(d.Done-d.First) / 1e9
	out["drained_s"] = float64(d.Drained-d.First) / 1e9
	out["not_refused"], out["statuses"] = missing, o.status
	if missing > 0 {
		out["timed_out"] = true
	}
	emit(out)
}
