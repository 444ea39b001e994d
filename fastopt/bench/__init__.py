"""``fastopt bench``: timings of the steps against same-traffic kernels, the machine's bandwidth and
the peers that are installed. Not imported by the library."""
