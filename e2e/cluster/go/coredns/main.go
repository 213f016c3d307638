// Command coredns is CoreDNS with only the plugins the local cluster's
// Corefile uses: cluster names from the API server (kubernetes), everything
// else forwarded to the host's resolver, a cache, and a readiness endpoint.
// Fewer plugins keep its build short and its dependencies few.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
