"""Impact and statistics (issue #10): CO2e totals, equivalents, leaderboards, dashboards, reports, medals."""
