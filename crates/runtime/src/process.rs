//! placeholder, written by the process-driver work
pub struct ProcessDriver;
