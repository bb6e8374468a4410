//! placeholder: static assets are written by the assets work
