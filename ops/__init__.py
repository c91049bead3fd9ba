"""Operations: the `esper` command line, benchmarks, alert rules, dashboards and the runbook."""
