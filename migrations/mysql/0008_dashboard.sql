-- Migration 0008: dashboard sessions and failed-login counts.
-- A session row is keyed by the SHA-256 of the cookie's token, so the
-- database never holds a usable cookie. login_failures counts failed
-- dashboard logins per client address within a window (the login throttle).
-- No statement may contain a semicolon except as its terminator, and comments
-- stay on their own lines: taskq.migrate splits migrations on ';'.

CREATE TABLE IF NOT EXISTS dashboard_sessions (
    token_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    csrf_token CHAR(43) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    key_ref    VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    PRIMARY KEY (token_hash),
    KEY dashboard_sessions_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS login_failures (
    address      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    failures     INT NOT NULL,
    window_start DATETIME(6) NOT NULL,
    PRIMARY KEY (address)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
