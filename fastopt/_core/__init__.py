"""What every part of fastopt shares: backend dispatch, input checks, host/device memory, the
16-bit formats, thread counts and the tunables (:mod:`fastopt._core.config`)."""
