//! The ground floor: what every other module may use and that imports nothing of ours — text
//! escaping for terminals and logs, hex, JSON strings as serde_json spells them, and the one
//! RFC 3339 timestamp formatter.

mod escape;
mod hex;
mod json;
pub mod time;

pub use escape::escape_text;
pub use hex::hex;
pub use json::json_str;
