//! The authproxy. Not built yet: see README "Status" and the authproxy issue.
