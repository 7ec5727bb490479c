"""lanner.compile: quantize and compile student models per target into deployable packages."""
