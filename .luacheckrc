-- luacheck settings for the scripts as Redis runs them (each command with its includes expanded,
-- written out by tests/lint_lua.py). Redis 7 provides these globals to every script and refuses
-- any new global, so scripts may only read them.
std = "lua51"
read_globals = {"redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct"}
max_line_length = 100
