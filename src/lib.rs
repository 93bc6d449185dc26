//! pg_standby: a waiting restore_command for PostgreSQL warm standbys.
