package client

import (
	"strings"
	"sync/atomic"
)

// route is a subscription's filter and handler.
type route struct {
	filter  string // as subscribed
	match   string // the filter topics are matched against: without a $share/{group}/ prefix
	qos     byte   // as requested, for subscribing again
	handler Handler
	gen     uint64 // the SUBSCRIBE that installed it
}

// routes is an immutable table of routes, in subscription order. The reader
// takes the table current when it reads a PUBLISH and the dispatcher
// matches the message against that table, so a message is routed by the
// subscriptions in force when it arrived: an UNSUBACK read later does not
// take a message already read from its handler [MQTT-3.10.4-3].
type routes struct {
	list []route
	gen  uint64 // the last generation given
}

// router holds the subscriptions and their handlers. A subscription's route
// is installed as its SUBSCRIBE is queued, before it is written, so that messages the server
// sends before its SUBACK (spec 3.8.4 allows it; retained messages often
// come so) reach its handler; it goes when the server refuses the filter or
// an UNSUBACK comes. Readers take the table without a lock; a change
// copies it and swaps the copy in, trying again if another change came
// first.
type router struct {
	cur atomic.Pointer[routes]
}

// snapshot returns the current table; nil means no routes.
func (rt *router) snapshot() *routes { return rt.cur.Load() }

// add installs routes for subs, replacing those of the same filters
// [MQTT-3.8.4-3], and returns the generation that names them. It is called
// as their SUBSCRIBE is queued for writing.
func (rt *router) add(subs []Subscription) uint64 {
	for {
		t := rt.cur.Load()
		next, gen := t.with(subs)
		if rt.cur.CompareAndSwap(t, next) {
			return gen
		}
	}
}

// with returns a copy of t with routes for subs, and their generation.
func (t *routes) with(subs []Subscription) (*routes, uint64) {
	var list []route
	gen := uint64(1)
	if t != nil {
		list = append(list, t.list...)
		gen = t.gen + 1
	}
	for _, s := range subs {
		r := newRoute(s, gen)
		found := false
		for i := range list {
			if list[i].filter == s.Filter {
				list[i], found = r, true
				break
			}
		}
		if !found {
			list = append(list, r)
		}
	}
	return &routes{list: list, gen: gen}, gen
}

// lastGen returns the generation of the newest routes.
func (rt *router) lastGen() uint64 {
	if t := rt.cur.Load(); t != nil {
		return t.gen
	}
	return 0
}

// remove takes out the routes of filters that generation gen installed (a
// refused SUBSCRIBE must not remove a later one's route).
func (rt *router) remove(filters []string, gen uint64) {
	rt.change(func(t *routes) *routes { return t.without(filters, func(g uint64) bool { return g == gen }) })
}

// removeUpTo takes out the routes of filters installed by generation gen
// or before: an UNSUBACK removes what was subscribed before its
// UNSUBSCRIBE was written, not a SUBSCRIBE written since.
func (rt *router) removeUpTo(filters []string, gen uint64) {
	rt.change(func(t *routes) *routes { return t.without(filters, func(g uint64) bool { return g <= gen }) })
}

// change swaps in f's copy of the table, trying again when another change
// came first.
func (rt *router) change(f func(*routes) *routes) {
	for {
		t := rt.cur.Load()
		next := f(t)
		if next == t || rt.cur.CompareAndSwap(t, next) {
			return
		}
	}
}

// without returns a copy of t without the routes of filters whose
// generation gone accepts, or t itself when none goes.
func (t *routes) without(filters []string, gone func(uint64) bool) *routes {
	if t == nil {
		return nil
	}
	list := make([]route, 0, len(t.list))
	for _, r := range t.list {
		drop := false
		for _, f := range filters {
			if r.filter == f && gone(r.gen) {
				drop = true
				break
			}
		}
		if !drop {
			list = append(list, r)
		}
	}
	if len(list) == len(t.list) {
		return t
	}
	// An empty table keeps the generation: gen only grows.
	return &routes{list: list, gen: t.gen}
}

// all returns every subscription, with the generation of its route, for a
// Session to make them again.
func (rt *router) all() ([]Subscription, []uint64) {
	t := rt.cur.Load()
	if t == nil {
		return nil, nil
	}
	subs := make([]Subscription, len(t.list))
	gens := make([]uint64, len(t.list))
	for i, r := range t.list {
		subs[i] = Subscription{Filter: r.filter, QoS: r.qos, Handler: r.handler}
		gens[i] = r.gen
	}
	return subs, gens
}

func newRoute(s Subscription, gen uint64) route {
	r := route{filter: s.Filter, match: s.Filter, qos: s.QoS, handler: s.Handler, gen: gen}
	// A shared subscription $share/{group}/{filter} (mosquitto and others
	// accept it in 3.1.1) delivers messages whose topic matches {filter}.
	if rest, ok := strings.CutPrefix(s.Filter, "$share/"); ok {
		if _, f, ok := strings.Cut(rest, "/"); ok {
			r.match = f
		}
	}
	return r
}

// deliver runs, for m, the handler of every route whose filter matches
// its topic, in subscription order, each once; when no route with a handler
// matches, or a matching route has none, it runs def too, once. It reports
// whether any handler ran. A nil table matches nothing. Handlers share
// m.Payload.
func (t *routes) deliver(m Message, def Handler) bool {
	ran, toDefault := false, false
	if t != nil {
		for i := range t.list {
			r := &t.list[i]
			if !MatchTopic(r.match, m.Topic) {
				continue
			}
			if r.handler == nil {
				toDefault = true
				continue
			}
			r.handler(m)
			ran = true
		}
	}
	if (!ran || toDefault) && def != nil {
		def(m)
		ran = true
	}
	return ran
}
