package testenv

import "syscall"

// Signal sends sig to node i's agent (SIGHUP rereads its -acl-file), unless
// it has exited.
func (c *Cluster) Signal(i int, sig syscall.Signal) {
	c.t.Helper()
	if err := c.nodes[i].proc.signal(sig); err != nil {
		c.t.Fatal(err)
	}
}
