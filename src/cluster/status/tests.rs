//! Tests of the status report and table.
