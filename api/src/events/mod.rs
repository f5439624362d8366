//! Event model. Owned by the events work.
