// kstatus reads Kubernetes objects as a JSON array on stdin and prints, for each, what
// the kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status) computes: the status
// Flux, kpt and `kubectl wait`-style tools derive from observedGeneration and the
// Ready/Reconciling/Stalled conditions. The tests compare it with what we expect for
// every phase of a ModelDeployment.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

func main() {
	var objects []json.RawMessage
	if err := json.NewDecoder(os.Stdin).Decode(&objects); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: stdin is not a JSON array of objects: %v\n", err)
		os.Exit(2)
	}
	verdicts := make([]verdict, 0, len(objects))
	for _, raw := range objects {
		// UnmarshalJSON keeps integers as int64, as objects read from the API server have them.
		object := &unstructured.Unstructured{}
		if err := object.UnmarshalJSON(raw); err != nil {
			verdicts = append(verdicts, verdict{Error: err.Error()})
			continue
		}
		result, err := status.Compute(object)
		if err != nil {
			verdicts = append(verdicts, verdict{Error: err.Error()})
			continue
		}
		verdicts = append(verdicts, verdict{Status: result.Status.String(), Message: result.Message})
	}
	if err := json.NewEncoder(os.Stdout).Encode(verdicts); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(1)
	}
}
