//! In: events and loss markers from the pipeline, requests from gRPC clients.
//! Out: GetEvents streams (filtered, per-client bounded queues), status and the policy and pod
//! services, over a unix socket or TCP (TLS).

pub mod broadcast;
pub mod event_filter;
pub mod server;
pub mod tls;
