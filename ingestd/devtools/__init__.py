"""What the tests, the benchmarks and `ingestd local` use, and the daemon never imports: a mixed
workload with the exact points each message must become (workload), real servers on loopback
ports (servers), ingestd as a subprocess (daemon), and `ingestd local` (local)."""
