// Command k8s is one multi-call binary holding every Kubernetes component the
// local e2e cluster runs, in the manner of the old hyperkube. Linking one
// binary instead of seven saves most of a cold build on a two-core machine.
//
// The component is chosen by the name the binary is called by (a symlink such
// as kube-apiserver -> k8s) or, failing that, by the first argument:
//
//	kube-apiserver --help
//	k8s kubectl version
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	_ "time/tzdata" // CronJob time zones, as upstream's mains do

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/client-go/plugin/pkg/client/auth" // kubectl's auth plugins
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// cobraComponents build the command of each component that upstream runs
// through component-base's cli.Run.
var cobraComponents = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kube-proxy":              proxy.NewProxyCommand,
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if !known(name) && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	// Every component reads os.Args itself (cobra, kubectl's plugin lookup,
	// etcd's flag parsing), so make it look as if it had been called directly.
	os.Args = append([]string{name}, args...)

	switch {
	case name == "etcd":
		etcdmain.Main(os.Args)
	case name == "kubectl":
		runKubectl()
	case cobraComponents[name] != nil:
		os.Exit(cli.Run(cobraComponents[name]()))
	default:
		fmt.Fprintf(os.Stderr, "k8s: unknown component %q; call it as one of: %v\n", name, names())
		os.Exit(2)
	}
}

func runKubectl() {
	// As upstream's kubectl main: set verbosity before the command is built so
	// that plugin and kuberc handling can log.
	_, _ = logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args))
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err)
	}
}

func known(name string) bool {
	return name == "etcd" || name == "kubectl" || cobraComponents[name] != nil
}

func names() []string {
	out := []string{"etcd", "kubectl"}
	for n := range cobraComponents {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
