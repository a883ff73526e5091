// Command etcd is the lab's etcd server, built from go.etcd.io/etcd/server/v3 in the same
// module graph as kube-apiserver, so both agree on the etcd client and API versions.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
