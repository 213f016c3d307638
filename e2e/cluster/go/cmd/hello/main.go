// Command hello is a tiny static HTTP server for the cluster's own proof tests:
// it answers every request with the pod's name, so a test can tell which pod
// served it, and needs no base image. `hello get [-k] URL` is its client, so a
// test can make a request from inside a pod with `kubectl exec` (-k skips TLS
// verification, for reaching the API server through its Service).
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "get" {
		os.Exit(get(os.Args[2:]))
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	name, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", name)
	})
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// get prints the body of one GET and exits non-zero unless the status is 2xx.
func get(args []string) int {
	client := &http.Client{Timeout: 5 * time.Second}
	if args[0] == "-k" && len(args) > 1 {
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		args = args[1:]
	}
	response, err := client.Get(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer response.Body.Close()
	_, _ = io.Copy(os.Stdout, response.Body)
	if response.StatusCode/100 != 2 {
		fmt.Fprintln(os.Stderr, response.Status)
		return 1
	}
	return 0
}
