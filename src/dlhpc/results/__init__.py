"""From run directories and one scheduler query to states, tables, plots, reports and causes."""
