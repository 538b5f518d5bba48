"""One thin module per CLI command: map arguments onto library functions and print."""
