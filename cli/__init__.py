"""The `crmhub` command line: thin over the library."""
