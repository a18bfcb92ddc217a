//! The ground floor: what every other module may use and that imports nothing of ours — text
//! escaping for terminals and logs, hex, and the one RFC 3339 timestamp formatter.

mod escape;
mod hex;
pub mod time;

pub use escape::escape_text;
pub use hex::hex;
