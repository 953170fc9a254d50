//! Sources: where alerts come in. Each source turns its wire format into `Vec<Alert>`
//! (`formats/`), sends one command into the writer queue and waits for the durable outcome
//! before it acknowledges anything (a 2xx, later a Kafka offset). Sources never touch the store
//! for writing; deciding is the pipeline's job.

pub mod formats;
pub mod http;
pub mod kafka;
