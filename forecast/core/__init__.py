"""The foundation every layer may import: the typed run configuration, the package's errors, safe
file writing (atomic writes, disk faults) and progress lines. It imports nothing else of the package."""
