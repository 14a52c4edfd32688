-- luacheck settings for the commands as Redis runs them: the Functions library they are built
-- into, and each command alone with its includes (written out by tests/lint_lua.py). Redis 7
-- provides these globals to every function and refuses any new global, so the library may only
-- read them; KEYS and ARGV are the library's own locals (inventory/scripts.py).
std = "lua51"
read_globals = {"redis", "cjson", "cmsgpack", "bit", "struct"}
max_line_length = 100
