//! What cairn prints about a hostile repository: every string from it is escaped (`text::visible`).
