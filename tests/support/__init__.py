"""What tests and benchmarks inject through the public API (trainables), instead of hooks in the product."""
