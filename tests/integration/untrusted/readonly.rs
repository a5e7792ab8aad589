//! Read-only commands (`verify`, `diff`, `lineage`, `audit`, `export`, `hash`) on hostile repositories.
