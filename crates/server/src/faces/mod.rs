//! Compatibility faces: the original servers' wire protocols, as thin adapters over the apps'
//! /v1 behaviour (one state, two protocols). Each runs on its own listener.

pub mod altair;
pub mod funkytown;
pub mod mv;
mod mv_doc;
pub mod pyjson;
pub mod testbed;
