//! End-to-end: `downlink image` on the real Meteor-M2 LRPT capture.
