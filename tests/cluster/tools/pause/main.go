// Command pause is the pod sandbox process of the test cluster: it does nothing until SIGINT or
// SIGTERM, and reaps zombies while it waits (it is PID 1 of the pod). Built static, shipped in a
// FROM-scratch image, since no registry (and so no upstream pause image) can be reached.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
