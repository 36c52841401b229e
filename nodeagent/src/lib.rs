//! The nodeagent. Not built yet: see README "Status" and the nodeagent issue.
