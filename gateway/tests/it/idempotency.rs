//! Idempotency keys at their edges.
