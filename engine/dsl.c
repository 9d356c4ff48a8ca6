#include "dsl.h"
#include "io/hub.h"

#include <errno.h>
#include <glob.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "key.h"
#include "stages/stages.h"

#define DECLARE_MEM_LIMIT ((size_t)1 << 30)   /* 1 GiB for evaluating a script */
#define EXEC_MEM_LIMIT ((size_t)16 << 30)     /* Lua stage bodies */
#define DECLARE_STEPS 500                     /* x 1M instructions */
#define BODY_STEPS 100000                     /* x 1M: a stage body's default budget */

struct exec;

typedef struct dsl {
	lua_State *L;
	const dsl_opts *o;
	dag *g;
	herr *e;
	buf script;          /* the script's text, for function sources */
	size_t *line_off;    /* start offset of each line (1-based index) */
	size_t nlines;
	char *chunk;         /* "@" + script */
	size_t mem, limit;
	long steps, max_steps;
	int H;               /* registry ref of the runtime table */
	int fnmeta;          /* registry ref of the function-marker metatable */
	int over;            /* a limit was hit: every instruction now raises */
	/* stage bodies (states kept across the stages of a run) */
	const char *stage;   /* the stage whose body runs, NULL for the script */
	const atomic_int *stop; /* the scheduler's stop flag for that stage */
	struct exec *cur;    /* that stage's context, NULL between stages */
	lua_Integer gen;     /* counts the stages run in this state */
	dag own;             /* the graph this state's script declared */
	int rand_ref;        /* registry ref of math.random's state (userdata) */
	void *rand0;         /* ... its bytes after the script ran */
	size_t rand_len;
} dsl;

/* ---- allocation and the instruction budget ------------------------------ */

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	dsl *d = ud;
	size_t old = ptr ? osize : 0;
	if (nsize == 0) {
		d->mem -= old;
		free(ptr);
		return NULL;
	}
	if (nsize > old && d->mem - old + nsize > d->limit)
		return NULL;
	void *p = realloc(ptr, nsize);
	if (p)
		d->mem = d->mem - old + nsize;
	return p;
}

static dsl *self(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

/* Called every million instructions: enforces the instruction budget and
 * the scheduler's stop request (timeout, interrupt). Once either is hit,
 * the hook fires on every instruction, so that a pcall in the Lua code
 * cannot swallow the error and carry on. */
static void count_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	void *ud;
	lua_getallocf(L, &ud);
	dsl *d = ud;
	int stop = d->stop && atomic_load(d->stop);
	if (!d->over && !stop && (d->max_steps < 0 || ++d->steps <= d->max_steps))
		return;
	if (!d->over) {
		d->over = 1;
		lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
	}
	char msg[512];
	if (stop)
		snprintf(msg, sizeof msg, "stopped");
	else if (d->stage)
		snprintf(msg, sizeof msg,
		         "its body ran for over %ld million instructions (its budget); an endless loop?\n"
		         "hint: if it needs more, raise the budget: budget = %ld in the stage, or --set %s.budget=%ld",
		         d->max_steps, d->max_steps * 10, d->stage, d->max_steps * 10);
	else
		snprintf(msg, sizeof msg, "%s: the pipeline script ran for over %ld million instructions; an endless loop?",
		         d->o->script, d->max_steps);
	lua_pushstring(L, msg);
	lua_error(L);
}

/* ---- Lua <-> hval ---------------------------------------------------------- */

static hval *to_hval(lua_State *L, int idx, int depth, herr *e, const char *what)
{
	idx = lua_absindex(L, idx);
	if (depth > 32) {
		herr_set(e, "%s: nested too deeply (or a table contains itself)", what);
		return NULL;
	}
	switch (lua_type(L, idx)) {
	case LUA_TNIL: return hval_new(HV_NIL);
	case LUA_TBOOLEAN: return hval_bool(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			return hval_int(lua_tointeger(L, idx));
		return hval_float(lua_tonumber(L, idx));
	case LUA_TSTRING: {
		size_t n;
		const char *s = lua_tolstring(L, idx, &n);
		return hval_str(s, n);
	}
	case LUA_TTABLE: break;
	default:
		herr_set(e, "%s: a %s cannot be a parameter value", what, luaL_typename(L, idx));
		return NULL;
	}
	luaL_checkstack(L, 8, "parameter nested too deeply");
	if (lua_getmetatable(L, idx)) {
		void *ud;
		lua_getallocf(L, &ud);
		lua_rawgeti(L, LUA_REGISTRYINDEX, ((dsl *)ud)->fnmeta);
		int is_fn = lua_rawequal(L, -1, -2);
		lua_pop(L, 2);
		if (is_fn) {
			lua_pushstring(L, "__hone_fn");
			lua_rawget(L, idx);
			size_t n;
			const char *s = lua_tolstring(L, -1, &n);
			hval *v = hval_str(s ? s : "", s ? n : 0);
			v->t = HV_FN;
			lua_pop(L, 1);
			return v;
		}
	}
	lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
	size_t count = 0;
	int all_str = 1;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		count++;
		if (lua_type(L, -2) != LUA_TSTRING)
			all_str = 0;
		else {
			size_t kl;
			const char *k = lua_tolstring(L, -2, &kl);
			if (strlen(k) != kl)
				all_str = 0; /* keys with NUL bytes are refused */
		}
		lua_pop(L, 1);
	}
	if (count == (size_t)len) {
		hval *v = hval_new(HV_LIST);
		for (lua_Integer i = 1; i <= len; i++) {
			lua_rawgeti(L, idx, i);
			hval *c = to_hval(L, -1, depth + 1, e, what);
			lua_pop(L, 1);
			if (!c) {
				hval_free(v);
				return NULL;
			}
			hval_list_push(v, c);
		}
		return v;
	}
	if (!all_str) {
		herr_set(e, "%s: a table must be a list or have only string keys", what);
		return NULL;
	}
	hval *v = hval_new(HV_MAP);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		hval *c = to_hval(L, -1, depth + 1, e, what);
		if (!c) {
			lua_pop(L, 2);
			hval_free(v);
			return NULL;
		}
		hval_map_set(v, lua_tostring(L, -2), c);
		lua_pop(L, 1);
	}
	return v;
}

static void push_hval(lua_State *L, const hval *v)
{
	luaL_checkstack(L, 4, "value nested too deeply");
	switch (v->t) {
	case HV_NIL: lua_pushnil(L); break;
	case HV_BOOL: lua_pushboolean(L, v->b); break;
	case HV_INT: lua_pushinteger(L, v->i); break;
	case HV_FLOAT: lua_pushnumber(L, v->f); break;
	case HV_STR: lua_pushlstring(L, v->s, v->slen); break;
	case HV_FN: lua_pushnil(L); break;
	case HV_LIST:
		lua_createtable(L, (int)v->n, 0);
		for (size_t i = 0; i < v->n; i++) {
			push_hval(L, &v->v[i]);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		break;
	case HV_MAP:
		lua_createtable(L, 0, (int)v->n);
		for (size_t i = 0; i < v->n; i++) {
			if (v->v[i].t == HV_FN)
				continue;
			push_hval(L, &v->v[i]);
			lua_setfield(L, -2, v->k[i]);
		}
		break;
	}
}

/* ---- bindings used by lua/hone.lua --------------------------------------- */

static int b_add_source(lua_State *L)
{
	dsl *d = self(L);
	const char *path = luaL_checkstring(L, 1);
	const char *where = luaL_checkstring(L, 2);
	const char *as = luaL_optstring(L, 3, NULL); /* a portable name for it */
	int hub = lua_toboolean(L, 4);               /* a Hugging Face model id may name it */
	char *abs = path_resolve(d->o->base, path);
	struct stat st;
	if (stat(abs, &st) != 0 && hub && hub_is_id(path)) {
		herr e;
		char *dir = NULL;
		if (hub_resolve(&e, path, &dir, 1) != 0) {
			lua_pushfstring(L, "%s: %s: no such file or folder (looked for %s); as a Hugging Face model id: %s%s%s", where,
			                path, abs, e.msg, e.hint[0] ? "\nhint: " : "", e.hint);
			free(abs);
			return lua_error(L);
		}
		char *shown = xasprintf("hf:%s", path);
		int idx = dag_add_source(d->g, dir, shown, where);
		free(shown);
		free(dir);
		free(abs);
		lua_pushinteger(L, idx);
		return 1;
	}
	if (stat(abs, &st) != 0) {
		lua_pushfstring(L, "%s: input file not found: %s (looked for %s)", where, as ? as : path, abs);
		if (as)
			lua_pushfstring(L, "%s\nhint: `make data` in the hone folder fetches it", lua_tostring(L, -1));
		free(abs);
		return lua_error(L);
	}
	/* named by the path from the project root, so that keys and lineage
	 * are the same in every checkout (outside the root: the absolute path) */
	char *shown = as ? xstrdup(as) : path_relative(d->o->root ? d->o->root : d->o->base, abs);
	int idx = dag_add_source(d->g, abs, shown, where);
	free(shown);
	free(abs);
	lua_pushinteger(L, idx);
	return 1;
}

/* Stage and output names: letters, digits, '_' and '-', not starting with
 * '-'; they become folder names in the store. */
static int valid_name(const char *s)
{
	if (!s[0] || s[0] == '-' || strlen(s) > 128)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '_' || *s == '-'))
			return 0;
	return 1;
}

static int b_set_fn(lua_State *L)
{
	dsl *d = self(L);
	lua_Integer node = luaL_checkinteger(L, 1);
	const char *key = luaL_checkstring(L, 2);
	size_t n;
	const char *digest = luaL_checklstring(L, 3, &n);
	if (node < 0 || (size_t)node >= d->g->n)
		return luaL_error(L, "set_fn: bad node");
	hval *v = hval_str(digest, n);
	v->t = HV_FN;
	hval_map_set(d->g->nodes[node].params, key, v);
	return 0;
}

/* glob(pattern, where): the matching paths, sorted, relative to the
 * pipeline's folder as written; no match is an error. */
static int b_glob(lua_State *L)
{
	dsl *d = self(L);
	const char *pat = luaL_checkstring(L, 1);
	const char *where = luaL_checkstring(L, 2);
	char *abs = path_resolve(d->o->base, pat);
	glob_t g;
	int rc = glob(abs, GLOB_ERR, NULL, &g);
	if (rc != 0) {
		lua_pushfstring(L, "%s: no file matches \"%s\" (looked in %s)", where, pat, d->o->base);
		free(abs);
		if (rc != GLOB_NOMATCH)
			globfree(&g);
		return lua_error(L);
	}
	lua_createtable(L, (int)g.gl_pathc, 0);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		char *rel = path_relative(d->o->base, g.gl_pathv[i]);
		lua_pushstring(L, rel);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
		free(rel);
	}
	globfree(&g);
	free(abs);
	return 1;
}

static int b_add_stage(lua_State *L)
{
	dsl *d = self(L);
	const char *name = luaL_checkstring(L, 1);
	const char *kind = luaL_checkstring(L, 2);
	const char *kernel = luaL_checkstring(L, 3);
	luaL_checktype(L, 4, LUA_TTABLE);
	luaL_checktype(L, 5, LUA_TTABLE);
	luaL_checktype(L, 6, LUA_TTABLE);
	const char *where = luaL_checkstring(L, 7);
	herr e;
	char *what = xasprintf("%s: %s: parameter", where, kind);
	hval *params = hval_new(HV_MAP);
	lua_pushnil(L);
	while (lua_next(L, 4)) {
		const char *k = lua_tostring(L, -2);
		char *w = xasprintf("%s '%s'", what, k);
		hval *v = to_hval(L, -1, 0, &e, w);
		free(w);
		if (!v) {
			free(what);
			hval_free(params);
			lua_pushstring(L, e.msg);
			return lua_error(L);
		}
		hval_map_set(params, k, v);
		lua_pop(L, 1);
	}
	free(what);
	const kernel_def *k = kernel_find(kernel);
	if (!k) {
		hval_free(params);
		return luaL_error(L, "%s: stage %s: no kernel named '%s'", where, kind, kernel);
	}
	/* the key carries the native kernel's version: bumping it when a
	 * kernel's output changes invalidates every cached result of it */
	if (!valid_name(name)) {
		hval_free(params);
		return luaL_error(L, "%s: stage name '%s': use letters, digits, '_' and '-'", where, name);
	}
	int node = dag_add_stage(d->g, name, kind, kernel, k->version, params, where);
	lua_Integer n = (lua_Integer)lua_rawlen(L, 5);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, 5, i);
		lua_getfield(L, -1, "slot");
		lua_getfield(L, -2, "node");
		lua_getfield(L, -3, "output");
		lua_getfield(L, -4, "ref");
		lua_Integer from = lua_isinteger(L, -3) ? lua_tointeger(L, -3) : -1;
		const char *out = lua_tostring(L, -2), *ref = lua_tostring(L, -1);
		if (from >= node || (from < 0 && !ref) || (out && !valid_name(out)) || !lua_tostring(L, -4))
			return luaL_error(L, "%s: stage %s: invalid input", where, name);
		dag_add_input(d->g, node, lua_tostring(L, -4), (int)from, out, ref);
		lua_pop(L, 5);
	}
	n = (lua_Integer)lua_rawlen(L, 6);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, 6, i);
		if (!lua_tostring(L, -1) || !valid_name(lua_tostring(L, -1)))
			return luaL_error(L, "%s: stage %s: output names use letters, digits, '_' and '-'", where, name);
		dag_add_output(d->g, node, lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	if (n) {
		/* the outputs declared are part of what the stage does */
		hval *outs = hval_new(HV_LIST);
		for (size_t i = 0; i < d->g->nodes[node].nout; i++)
			hval_list_push(outs, hval_str(d->g->nodes[node].outputs[i],
			                              strlen(d->g->nodes[node].outputs[i])));
		hval_map_set(d->g->nodes[node].params, "outputs", outs);
	}
	if (lua_istable(L, 8)) {
		/* limits bound the execution, never the output: not parameters */
		lua_getfield(L, 8, "timeout");
		lua_getfield(L, 8, "budget");
		d->g->nodes[node].timeout = lua_isnumber(L, -2) ? lua_tonumber(L, -2) : 0;
		d->g->nodes[node].budget = lua_isinteger(L, -1) ? (long)lua_tointeger(L, -1) : 0;
		lua_pop(L, 2);
	}
	lua_pushinteger(L, node);
	return 1;
}

static int b_fnsrc(lua_State *L)
{
	dsl *d = self(L);
	luaL_checktype(L, 1, LUA_TFUNCTION);
	lua_Debug ar;
	lua_pushvalue(L, 1);
	lua_getinfo(L, ">S", &ar);
	if (strcmp(ar.source, d->chunk) != 0 || ar.linedefined <= 0 ||
	    (size_t)ar.lastlinedefined > d->nlines) {
		lua_pushnil(L);
		return 1;
	}
	size_t a = d->line_off[ar.linedefined];
	size_t b = (size_t)ar.lastlinedefined < d->nlines ? d->line_off[ar.lastlinedefined + 1]
	                                                  : d->script.len;
	lua_pushlstring(L, d->script.p + a, b - a);
	return 1;
}

static int b_hash(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	hkey k;
	char hex[HKEY_HEX];
	hkey_of(&k, s, n);
	hkey_hex(&k, hex);
	lua_pushstring(L, hex);
	return 1;
}

static int b_distance(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)edit_distance(luaL_checkstring(L, 1), luaL_checkstring(L, 2)));
	return 1;
}

/* ---- setting up a state --------------------------------------------------- */

/* Moves a Lua error message into e, splitting off a "hint:" line. */
static int lua_fail(dsl *d, const char *prefix)
{
	const char *msg = lua_tostring(d->L, -1);
	if (!msg)
		msg = "(error object is not a string)";
	if (strstr(msg, "not enough memory"))
		herr_set(d->e, "%s: the Lua code used more than %zu MiB of memory", d->o->script,
		         d->limit >> 20);
	else
		herr_set(d->e, "%s%s", prefix ? prefix : "", msg);
	char *h = strstr(d->e->msg, "\nhint: ");
	if (h) {
		*h = 0;
		snprintf(d->e->hint, sizeof d->e->hint, "%s", h + 7);
	}
	lua_pop(d->L, 1);
	return -1;
}

static int load_file_chunk(dsl *d, const char *path, const char *chunkname)
{
	buf b;
	buf_init(&b);
	if (fs_read(d->e, path, &b) != 0) {
		buf_free(&b);
		return -1;
	}
	int rc = luaL_loadbufferx(d->L, b.p, b.len, chunkname, "t");
	buf_free(&b);
	if (rc != LUA_OK)
		return lua_fail(d, NULL);
	return 0;
}

static int open_state(dsl *d, herr *e, const dsl_opts *o, dag *g, size_t limit)
{
	memset(d, 0, sizeof *d);
	d->o = o;
	d->g = g;
	d->e = e;
	d->limit = limit;
	d->max_steps = DECLARE_STEPS;
	buf_init(&d->script);
	d->chunk = xasprintf("@%s", o->script);
	d->L = lua_newstate(l_alloc, d);
	if (!d->L)
		return herr_set(e, "cannot create a Lua state");
	lua_State *L = d->L;
	luaL_openlibs(L);

	/* the runtime, given its bindings */
	char *rt = xasprintf("%s/lua/hone.lua", o->home);
	int rc = load_file_chunk(d, rt, "@lua/hone.lua");
	free(rt);
	if (rc)
		return -1;
	lua_newtable(L);
	static const luaL_Reg fns[] = {
		{"add_source", b_add_source}, {"add_stage", b_add_stage}, {"fnsrc", b_fnsrc},
		{"hash", b_hash}, {"distance", b_distance}, {"set_fn", b_set_fn}, {"glob", b_glob}, {NULL, NULL}};
	lua_pushlightuserdata(L, d);
	luaL_setfuncs(L, fns, 1);
	lua_pushstring(L, d->chunk);
	lua_setfield(L, -2, "chunk");
	lua_pushstring(L, o->script);
	lua_setfield(L, -2, "script");
	lua_pushstring(L, o->home);
	lua_setfield(L, -2, "home");
	lua_newtable(L);
	lua_pushvalue(L, -1);
	d->fnmeta = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_setfield(L, -2, "fnmeta");
	lua_newtable(L);
	for (size_t i = 0; i < o->nov; i++) {
		if (lua_getfield(L, -1, o->ov[i].stage) != LUA_TTABLE) {
			lua_pop(L, 1);
			lua_newtable(L);
			lua_pushvalue(L, -1);
			lua_setfield(L, -3, o->ov[i].stage);
		}
		lua_pushstring(L, o->ov[i].value);
		lua_setfield(L, -2, o->ov[i].param);
		lua_pop(L, 1);
	}
	lua_setfield(L, -2, "overrides");
	if (o->device) {
		lua_pushstring(L, o->device);
		lua_setfield(L, -2, "device");
	}
	if (lua_pcall(L, 1, 1, 0) != LUA_OK)
		return lua_fail(d, "lua/hone.lua: ");
	d->H = luaL_ref(L, LUA_REGISTRYINDEX);

	/* the stdlib, one spec per file, in name order */
	char *dir = path_join(o->home, "stdlib");
	char **files;
	size_t n;
	if (fs_list_files(e, dir, &files, &n) != 0) {
		free(dir);
		return -1;
	}
	rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		size_t len = strlen(files[i]);
		if (len < 5 || strcmp(files[i] + len - 4, ".lua") || strchr(files[i], '/'))
			continue;
		char *p = path_join(dir, files[i]);
		char *cn = xasprintf("@stdlib/%s", files[i]);
		rc = load_file_chunk(d, p, cn);
		if (rc == 0) {
			/* a spec file (and its validate function) sees the sandbox */
			lua_rawgeti(L, LUA_REGISTRYINDEX, d->H);
			lua_getfield(L, -1, "env");
			lua_remove(L, -2);
			lua_setupvalue(L, -2, 1);
			lua_rawgeti(L, LUA_REGISTRYINDEX, d->H);
			lua_getfield(L, -1, "register");
			lua_remove(L, -2);
			lua_insert(L, -2);
			if (lua_pcall(L, 0, 1, 0) != LUA_OK || lua_pcall(L, 1, 1, 0) != LUA_OK)
				rc = lua_fail(d, "");
			else
				lua_pop(L, 1);
		}
		free(cn);
		free(p);
	}
	strv_free(files, n);
	free(dir);
	return rc;
}

static void close_state(dsl *d)
{
	if (d->L) {
		/* finalizers run at close: keep them on a budget too */
		d->steps = 0;
		d->over = 0;
		d->stop = NULL;
		d->max_steps = 100;
		lua_sethook(d->L, count_hook, LUA_MASKCOUNT, 1000000);
		lua_close(d->L);
	}
	buf_free(&d->script);
	free(d->line_off);
	free(d->chunk);
	free(d->rand0);
	d->rand0 = NULL;
	d->L = NULL;
}

/* Runs the pipeline script; on success the runtime table is checked for
 * unused overrides and the graph is resolved. */
static int run_script(dsl *d)
{
	lua_State *L = d->L;
	if (fs_read(d->e, d->o->script_abs, &d->script) != 0) {
		herr_set(d->e, "%s: cannot read the pipeline: %s", d->o->script, strerror(errno));
		if (!fs_exists(d->o->script_abs))
			herr_set(d->e, "%s: no such pipeline file", d->o->script),
			herr_hint(d->e, "run `hone run FILE`, or cd to a folder with a pipeline.lua");
		return -1;
	}
	d->nlines = 1;
	for (size_t i = 0; i < d->script.len; i++)
		d->nlines += d->script.p[i] == '\n';
	d->line_off = xcalloc(d->nlines + 2, sizeof *d->line_off);
	size_t ln = 1;
	d->line_off[1] = 0;
	for (size_t i = 0; i < d->script.len; i++)
		if (d->script.p[i] == '\n')
			d->line_off[++ln] = i + 1;
	if (luaL_loadbufferx(L, d->script.p ? d->script.p : "", d->script.len, d->chunk, "t") != LUA_OK)
		return lua_fail(d, NULL);
	lua_rawgeti(L, LUA_REGISTRYINDEX, d->H);
	lua_getfield(L, -1, "env");
	lua_remove(L, -2);
	lua_setupvalue(L, -2, 1);
	lua_sethook(L, count_hook, LUA_MASKCOUNT, 1000000);
	int rc = lua_pcall(L, 0, 0, 0);
	lua_sethook(L, NULL, 0, 0);
	if (rc != LUA_OK)
		return lua_fail(d, NULL);
	lua_rawgeti(L, LUA_REGISTRYINDEX, d->H);
	lua_getfield(L, -1, "finish");
	lua_remove(L, -2);
	if (lua_pcall(L, 0, 0, 0) != LUA_OK)
		return lua_fail(d, NULL);
	if (dag_resolve(d->e, d->g) != 0 || dag_check_cycles(d->e, d->g) != 0)
		return -1;
	return 0;
}

int dsl_load(herr *e, const dsl_opts *o, dag *g)
{
	dsl d;
	int rc = open_state(&d, e, o, g, DECLARE_MEM_LIMIT);
	if (rc == 0)
		rc = run_script(&d);
	close_state(&d);
	return rc;
}

int dsl_add_override(herr *e, dsl_opts *o, const char *arg)
{
	const char *dot = strchr(arg, '.');
	const char *eq = strchr(arg, '=');
	if (!dot || !eq || dot > eq || dot == arg || eq == dot + 1)
		return herr_set(e, "--set %s: expected STAGE.PARAM=VALUE, as in --set train.lr=1e-3", arg);
	o->ov = xrealloc(o->ov, (o->nov + 1) * sizeof *o->ov);
	dsl_override *v = &o->ov[o->nov++];
	v->stage = xstrndup(arg, (size_t)(dot - arg));
	v->param = xstrndup(dot + 1, (size_t)(eq - dot - 1));
	v->value = xstrdup(eq + 1);
	return 0;
}

void dsl_opts_free(dsl_opts *o)
{
	for (size_t i = 0; i < o->nov; i++) {
		free(o->ov[i].stage);
		free(o->ov[i].param);
		free(o->ov[i].value);
	}
	free(o->ov);
	free(o->device);
	free(o->script);
	free(o->script_abs);
	free(o->base);
	free(o->root);
	free(o->home);
	memset(o, 0, sizeof *o);
}

/* ---- Lua stage bodies at run time ----------------------------------------- */

struct writer;

struct line_iter;

typedef struct exec {
	kctx *c;
	const char *outdir;
	double done;
	struct writer *open;     /* writers not closed yet */
	struct line_iter *iters; /* line iterators not finished yet */
} exec;

/* The context of the running stage. The closures handed to a stage body
 * carry the state and the stage's number (upvalues up, up + 1): a ctx or
 * input kept by one body and used by a later stage of the same state is
 * refused instead of reaching a context that is gone. */
static exec *ex_at(lua_State *L, int up)
{
	dsl *d = lua_touserdata(L, lua_upvalueindex(up));
	if (!d->cur || lua_tointeger(L, lua_upvalueindex(up + 1)) != d->gen)
		luaL_error(L, "a stage's ctx and inputs can be used only while its body runs");
	return d->cur;
}

static exec *ex(lua_State *L) { return ex_at(L, 1); }

/* Checks that rel names a file inside an input/output without escaping. */
static int safe_rel(const char *rel)
{
	return path_safe_relative(rel) && strcmp(rel, ".hone-manifest") != 0;
}

/* artifact methods: upvalues (1) path (2) is_dir (3) label */
static int art_files(lua_State *L)
{
	const char *path = lua_tostring(L, lua_upvalueindex(1));
	lua_newtable(L);
	if (!lua_toboolean(L, lua_upvalueindex(2))) {
		const char *base = strrchr(path, '/');
		lua_pushstring(L, base ? base + 1 : path);
		lua_rawseti(L, -2, 1);
		return 1;
	}
	herr e;
	char **files;
	size_t n;
	if (fs_list_files(&e, path, &files, &n) != 0)
		return luaL_error(L, "%s", e.msg);
	lua_Integer k = 1;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(files[i], ".hone-manifest"))
			continue;
		lua_pushstring(L, files[i]);
		lua_rawseti(L, -2, k++);
	}
	strv_free(files, n);
	return 1;
}

/* Path of file `rel` (or the only file when rel is NULL) of an artifact. */
static char *art_file(lua_State *L, const char *rel)
{
	const char *path = lua_tostring(L, lua_upvalueindex(1));
	const char *label = lua_tostring(L, lua_upvalueindex(3));
	int is_dir = lua_toboolean(L, lua_upvalueindex(2));
	if (!is_dir) {
		const char *base = strrchr(path, '/');
		if (rel && strcmp(rel, base ? base + 1 : path) != 0)
			luaL_error(L, "input %s is the single file %s, not '%s'", label, base ? base + 1 : path, rel);
		return xstrdup(path);
	}
	if (!rel) {
		herr e;
		char **files;
		size_t n;
		if (fs_list_files(&e, path, &files, &n) != 0)
			luaL_error(L, "%s", e.msg);
		size_t real = 0;
		const char *only = NULL;
		for (size_t i = 0; i < n; i++)
			if (strcmp(files[i], ".hone-manifest") != 0)
				real++, only = files[i];
		char *p = real == 1 ? path_join(path, only) : NULL;
		strv_free(files, n);
		if (!p)
			luaL_error(L, "input %s has %d files; name the one to read (see :files())", label, (int)real);
		return p;
	}
	if (!safe_rel(rel))
		luaL_error(L, "input %s: file name '%s' must be relative, without '..'", label, rel);
	char *p = path_join(path, rel);
	if (!fs_exists(p)) {
		free(p);
		luaL_error(L, "input %s has no file '%s' (see :files())", label, rel);
	}
	return p;
}

static int art_read(lua_State *L)
{
	char *p = art_file(L, luaL_optstring(L, 2, NULL));
	buf b;
	herr e;
	buf_init(&b);
	int rc = fs_read(&e, p, &b);
	free(p);
	if (rc) {
		buf_free(&b);
		return luaL_error(L, "%s", e.msg);
	}
	lua_pushlstring(L, b.p ? b.p : "", b.len);
	buf_free(&b);
	return 1;
}

typedef struct line_iter {
	FILE *f;
	char **paths;
	size_t n, i;
	char *line;
	size_t cap;
	struct line_iter *next, **prev; /* in exec.iters while open */
} line_iter;

/* Closes the file and forgets the paths; the iterator then ends. */
static void iter_finish(line_iter *it)
{
	if (it->prev) {
		*it->prev = it->next;
		if (it->next)
			it->next->prev = it->prev;
		it->prev = NULL;
	}
	if (it->f)
		fclose(it->f);
	it->f = NULL;
	strv_free(it->paths, it->n);
	it->paths = NULL;
	it->n = 0;
	free(it->line);
	it->line = NULL;
}

static int iter_gc(lua_State *L)
{
	iter_finish(luaL_checkudata(L, 1, "hone.lines"));
	return 0;
}

static int iter_next(lua_State *L)
{
	line_iter *it = lua_touserdata(L, lua_upvalueindex(1));
	for (;;) {
		if (!it->f) {
			if (it->i >= it->n)
				return 0;
			it->f = fopen(it->paths[it->i++], "rb");
			if (!it->f)
				return luaL_error(L, "%s: cannot open: %s", it->paths[it->i - 1], strerror(errno));
		}
		ssize_t r = getline(&it->line, &it->cap, it->f);
		if (r < 0) {
			fclose(it->f);
			it->f = NULL;
			continue;
		}
		if (r > 0 && it->line[r - 1] == '\n')
			r--;
		lua_pushlstring(L, it->line, (size_t)r);
		return 1;
	}
}

/* Pushes the four values of a generic for: the iterator, nil, nil and the
 * closing value, so that leaving the loop early closes the file. */
static int push_lines(lua_State *L, exec *x, char **paths, size_t n)
{
	line_iter *it = lua_newuserdatauv(L, sizeof *it, 0);
	memset(it, 0, sizeof *it);
	it->paths = paths;
	it->n = n;
	it->next = x->iters;
	if (x->iters)
		x->iters->prev = &it->next;
	it->prev = &x->iters;
	x->iters = it;
	if (luaL_newmetatable(L, "hone.lines")) {
		lua_pushcfunction(L, iter_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, iter_gc);
		lua_setfield(L, -2, "__close");
	}
	lua_setmetatable(L, -2);
	int u = lua_gettop(L);
	lua_pushvalue(L, u);
	lua_pushcclosure(L, iter_next, 1);
	lua_pushnil(L);
	lua_pushnil(L);
	lua_pushvalue(L, u);
	return 4;
}

static int art_lines(lua_State *L)
{
	exec *x = ex_at(L, 4);
	const char *rel = luaL_optstring(L, 2, NULL);
	const char *path = lua_tostring(L, lua_upvalueindex(1));
	char **paths;
	size_t n;
	if (rel || !lua_toboolean(L, lua_upvalueindex(2))) {
		char *one = art_file(L, rel); /* may raise: allocate after it */
		paths = xmalloc(sizeof *paths);
		paths[0] = one;
		n = 1;
	} else {
		herr e;
		char **files;
		size_t m;
		if (fs_list_files(&e, path, &files, &m) != 0)
			return luaL_error(L, "%s", e.msg);
		paths = xcalloc(m ? m : 1, sizeof *paths);
		n = 0;
		for (size_t i = 0; i < m; i++)
			if (strcmp(files[i], ".hone-manifest") != 0)
				paths[n++] = path_join(path, files[i]);
		strv_free(files, m);
	}
	return push_lines(L, x, paths, n);
}

/* The closures of an input: upvalues path, is_dir, label, then the state
 * and its stage number (ex_at). */
static void push_artifact(lua_State *L, dsl *d, const kinput *in)
{
	lua_createtable(L, 0, 5);
	lua_pushstring(L, in->slot);
	lua_setfield(L, -2, "slot");
	lua_pushstring(L, in->label);
	lua_setfield(L, -2, "name");
	static const luaL_Reg m[] = {{"files", art_files}, {"read", art_read}, {"lines", art_lines}, {NULL, NULL}};
	for (const luaL_Reg *r = m; r->name; r++) {
		lua_pushstring(L, in->path);
		lua_pushboolean(L, in->is_dir);
		lua_pushstring(L, in->label);
		lua_pushlightuserdata(L, d);
		lua_pushinteger(L, d->gen);
		lua_pushcclosure(L, r->func, 5);
		lua_setfield(L, -2, r->name);
	}
}

/* writers */
typedef struct writer {
	FILE *f;
	char *name;
	exec *x;
	struct writer *next, **prev; /* in x->open while open */
	int failed;
} writer;

/* Closes a writer; 0, or -1 when anything it wrote failed. */
static int writer_finish(writer *w)
{
	int bad = w->failed;
	if (w->f)
		bad |= fclose(w->f) != 0;
	w->f = NULL;
	if (w->prev) {
		*w->prev = w->next;
		if (w->next)
			w->next->prev = w->prev;
		w->prev = NULL;
	}
	return bad ? -1 : 0;
}

static int w_close(lua_State *L)
{
	writer *w = luaL_checkudata(L, 1, "hone.writer");
	int bad = writer_finish(w);
	if (bad && w->name) {
		lua_pushfstring(L, "%s: write error: %s", w->name, strerror(errno));
		free(w->name);
		w->name = NULL;
		return lua_error(L);
	}
	free(w->name);
	w->name = NULL;
	return 0;
}

static int w_gc(lua_State *L)
{
	writer *w = luaL_checkudata(L, 1, "hone.writer");
	writer_finish(w);
	free(w->name);
	w->name = NULL;
	return 0;
}

static int w_write(lua_State *L)
{
	writer *w = luaL_checkudata(L, 1, "hone.writer");
	if (!w->f)
		return luaL_error(L, "write to a closed output");
	int n = lua_gettop(L);
	for (int i = 2; i <= n; i++) {
		size_t len;
		const char *s = luaL_checklstring(L, i, &len);
		if (fwrite(s, 1, len, w->f) != len) {
			w->failed = 1;
			return luaL_error(L, "%s: write error: %s", w->name, strerror(errno));
		}
	}
	lua_settop(L, 1);
	return 1;
}

static int open_writer(lua_State *L, const char *rel)
{
	exec *x = ex(L);
	char *full;
	if (kctx_out_path(x->c, x->outdir, rel, &full) != 0)
		return luaL_error(L, "%s", x->c->err.msg);
	writer *w = lua_newuserdatauv(L, sizeof *w, 0);
	memset(w, 0, sizeof *w);
	w->f = fopen(full, "wb");
	w->name = xstrdup(rel);
	w->x = x;
	if (w->f) {
		w->next = x->open;
		if (x->open)
			x->open->prev = &w->next;
		w->prev = &x->open;
		x->open = w;
	}
	free(full);
	if (luaL_newmetatable(L, "hone.writer")) {
		lua_pushcfunction(L, w_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, w_close);
		lua_setfield(L, -2, "__close");
		lua_newtable(L);
		lua_pushcfunction(L, w_write);
		lua_setfield(L, -2, "write");
		lua_pushcfunction(L, w_close);
		lua_setfield(L, -2, "close");
		lua_setfield(L, -2, "__index");
	}
	lua_setmetatable(L, -2);
	if (!w->f)
		return luaL_error(L, "%s: cannot create: %s", rel, strerror(errno));
	return 1;
}

static int ctx_open(lua_State *L) { return open_writer(L, luaL_checkstring(L, 2)); }

static int ctx_write(lua_State *L)
{
	const char *rel = luaL_checkstring(L, 2);
	int n = lua_gettop(L);
	open_writer(L, rel);
	int w = lua_gettop(L);
	lua_pushcfunction(L, w_write);
	lua_pushvalue(L, w);
	for (int i = 3; i <= n; i++)
		lua_pushvalue(L, i);
	lua_call(L, n - 1, 0);
	lua_pushcfunction(L, w_close);
	lua_pushvalue(L, w);
	lua_call(L, 1, 0);
	return 0;
}

static int ctx_metric(lua_State *L)
{
	exec *x = ex(L);
	const char *name = luaL_checkstring(L, 2);
	if (lua_type(L, 3) == LUA_TNUMBER)
		kctx_metric(x->c, name, lua_tonumber(L, 3));
	else
		kctx_metric_str(x->c, name, luaL_checkstring(L, 3));
	return 0;
}

static int ctx_log(lua_State *L)
{
	exec *x = ex(L);
	int n = lua_gettop(L);
	buf b;
	buf_init(&b);
	for (int i = 2; i <= n; i++) {
		if (i > 2)
			buf_addc(&b, ' ');
		buf_adds(&b, luaL_tolstring(L, i, NULL));
		lua_pop(L, 1);
	}
	kctx_log(x->c, "%s", b.p ? b.p : "");
	buf_free(&b);
	return 0;
}

static int ctx_progress(lua_State *L)
{
	exec *x = ex(L);
	kctx_progress(x->c, luaL_checknumber(L, 2), luaL_optnumber(L, 3, 0), luaL_optstring(L, 4, ""));
	return 0;
}

static void push_ctx(lua_State *L, dsl *d, const dag_node *n, const kinput *in, size_t nin)
{
	lua_createtable(L, 0, 8);
	lua_pushstring(L, n->name);
	lua_setfield(L, -2, "stage");
	push_hval(L, n->params);
	lua_pushnil(L);
	lua_setfield(L, -2, "outputs");
	lua_setfield(L, -2, "params");
	lua_newtable(L);
	for (size_t i = 0; i < nin; i++) {
		push_artifact(L, d, &in[i]);
		lua_setfield(L, -2, in[i].slot);
	}
	lua_setfield(L, -2, "inputs");
	static const luaL_Reg m[] = {{"write", ctx_write}, {"open", ctx_open}, {"metric", ctx_metric},
	                             {"log", ctx_log}, {"progress", ctx_progress}, {NULL, NULL}};
	lua_pushlightuserdata(L, d);
	lua_pushinteger(L, d->gen);
	luaL_setfuncs(L, m, 2);
}

/* map / filter over the lines of input 1 */
static int run_linewise(dsl *d, exec *x, int fn_idx, const kinput *in, int is_filter)
{
	lua_State *L = d->L;
	char **files;
	size_t n;
	herr *e = d->e;
	if (in->is_dir) {
		if (fs_list_files(e, in->path, &files, &n) != 0)
			return -1;
	} else {
		const char *base = strrchr(in->path, '/');
		files = xmalloc(sizeof *files);
		files[0] = xstrdup(base ? base + 1 : in->path);
		n = 1;
	}
	int rc = 0;
	char *line = NULL;
	size_t cap = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!strcmp(files[i], ".hone-manifest"))
			continue;
		char *src = in->is_dir ? path_join(in->path, files[i]) : xstrdup(in->path);
		char *dst = NULL;
		FILE *f = fopen(src, "rb"), *o = NULL;
		if (!f)
			rc = herr_set(e, "%s: cannot open: %s", src, strerror(errno));
		else if (kctx_out_path(x->c, x->outdir, files[i], &dst) != 0)
			rc = herr_set(e, "%s", x->c->err.msg);
		else if (!(o = fopen(dst, "wb")))
			rc = herr_set(e, "%s: cannot create: %s", dst, strerror(errno));
		long lineno = 0;
		ssize_t r;
		while (rc == 0 && (r = getline(&line, &cap, f)) >= 0) {
			lineno++;
			x->done += (double)r;
			if (r > 0 && line[r - 1] == '\n')
				r--;
			lua_pushvalue(L, fn_idx);
			lua_pushlstring(L, line, (size_t)r);
			if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
				rc = lua_fail(d, "");
				herr_prefix(e, "%s line %ld", in->label, lineno);
				break;
			}
			if (is_filter) {
				if (lua_toboolean(L, -1)) {
					fwrite(line, 1, (size_t)r, o);
					fputc('\n', o);
				}
			} else if (lua_type(L, -1) == LUA_TSTRING) {
				size_t len;
				const char *s = lua_tolstring(L, -1, &len);
				fwrite(s, 1, len, o);
				fputc('\n', o);
			} else if (lua_type(L, -1) == LUA_TTABLE) {
				lua_Integer m = (lua_Integer)lua_rawlen(L, -1);
				for (lua_Integer k = 1; k <= m && rc == 0; k++) {
					lua_rawgeti(L, -1, k);
					size_t len;
					const char *s = lua_tolstring(L, -1, &len);
					if (!s || lua_type(L, -1) != LUA_TSTRING)
						rc = herr_set(e, "%s line %ld: fn returned a list with a %s; expected strings",
						              in->label, lineno, luaL_typename(L, -1));
					else {
						fwrite(s, 1, len, o);
						fputc('\n', o);
					}
					lua_pop(L, 1);
				}
			} else if (!lua_isnil(L, -1) && !(lua_isboolean(L, -1) && !lua_toboolean(L, -1))) {
				rc = herr_set(e, "%s line %ld: fn returned a %s; expected a string, nil or a list of strings",
				              in->label, lineno, luaL_typename(L, -1));
			}
			lua_pop(L, 1);
			if ((lineno & 4095) == 0)
				kctx_progress(x->c, x->done, 0, "B");
		}
		if (f)
			fclose(f);
		if (o && fclose(o) != 0 && rc == 0)
			rc = herr_set(e, "%s: write error", dst);
		free(dst);
		free(src);
	}
	free(line);
	strv_free(files, n);
	return rc;
}

/* ---- states kept across the stages of a run ------------------------------ */

/* Idle states of a run, each with the script evaluated once. A state serves
 * one stage at a time; up to -j of them exist at once. */
struct dsl_pool {
	pthread_mutex_t mu;
	dsl **idle;
	size_t n, cap;
};

dsl_pool *dsl_pool_new(void)
{
	dsl_pool *p = xcalloc(1, sizeof *p);
	pthread_mutex_init(&p->mu, NULL);
	return p;
}

static void state_drop(dsl *d)
{
	close_state(d);
	dag_free(&d->own);
	free(d);
}

void dsl_pool_free(dsl_pool *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		state_drop(p->idle[i]);
	free(p->idle);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

/* math.random keeps its generator in a userdata shared by the math
 * functions (its first upvalue, in Lua 5.4's lmathlib); its bytes after the
 * script ran are put back before every stage body, so a body draws the same
 * numbers whatever ran in the state before it. */
static void rand_snapshot(dsl *d)
{
	lua_State *L = d->L;
	d->rand_ref = LUA_NOREF;
	lua_getglobal(L, "math");
	if (lua_istable(L, -1) && lua_getfield(L, -1, "random") == LUA_TFUNCTION &&
	    lua_getupvalue(L, -1, 1) && lua_type(L, -1) == LUA_TUSERDATA) {
		d->rand_len = lua_rawlen(L, -1);
		d->rand0 = xmalloc(d->rand_len ? d->rand_len : 1);
		memcpy(d->rand0, lua_touserdata(L, -1), d->rand_len);
		d->rand_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_settop(L, 0);
}

static void rand_restore(dsl *d)
{
	if (d->rand_ref == LUA_NOREF)
		return;
	lua_rawgeti(d->L, LUA_REGISTRYINDEX, d->rand_ref);
	memcpy(lua_touserdata(d->L, -1), d->rand0, d->rand_len);
	lua_pop(d->L, 1);
}

/* A new state for the stage of c: the script evaluated again (it is
 * deterministic) and checked against the graph the run planned. */
static dsl *state_new(kctx *c)
{
	dsl *d = xcalloc(1, sizeof *d);
	int rc = open_state(d, &c->err, c->dsl, &d->own, EXEC_MEM_LIMIT);
	if (rc == 0)
		rc = run_script(d);
	if (rc != 0) {
		state_drop(d);
		return NULL;
	}
	rand_snapshot(d);
	lua_rawgeti(d->L, LUA_REGISTRYINDEX, d->H);
	lua_getfield(d->L, -1, "baseline");
	rc = lua_pcall(d->L, 0, 0, 0) == LUA_OK ? 0 : lua_fail(d, "lua/hone.lua: ");
	lua_settop(d->L, 0);
	if (rc != 0) {
		state_drop(d);
		return NULL;
	}
	return d;
}

/* 1 when the function of node still has the digest its key was made with:
 * no earlier stage body of this state changed what it closes over. */
static int fn_unchanged(dsl *d, int node)
{
	lua_State *L = d->L;
	lua_rawgeti(L, LUA_REGISTRYINDEX, d->H);
	lua_getfield(L, -1, "unchanged");
	lua_pushinteger(L, node);
	int ok = lua_pcall(L, 1, 1, 0) == LUA_OK && lua_toboolean(L, -1);
	lua_settop(L, 0);
	return ok;
}

/* A state for the stage of c: an idle one of the run when its script's
 * view of this stage is as planned, else a new one. */
static dsl *state_take(kctx *c, const hval *planned)
{
	dsl_pool *p = c->lua;
	dsl *d = NULL;
	if (p) {
		pthread_mutex_lock(&p->mu);
		if (p->n)
			d = p->idle[--p->n];
		pthread_mutex_unlock(&p->mu);
	}
	int fresh = 0;
	for (;;) {
		if (!d) {
			if (!(d = state_new(c)))
				return NULL;
			fresh = 1;
		}
		d->e = &c->err;
		d->o = c->dsl;
		const dag *g = &d->own;
		if (c->node < 0 || (size_t)c->node >= g->n || strcmp(g->nodes[c->node].name, c->stage)) {
			herr_set(&c->err, "%s: the pipeline changed while it was running", c->dsl->script);
			break;
		}
		if (planned && !hval_equal(planned, g->nodes[c->node].params)) {
			herr_set(&c->err, "%s: stage %s changed while the pipeline was running; run it again",
			         c->dsl->script, c->stage);
			break;
		}
		if (fresh || fn_unchanged(d, c->node))
			return d;
		/* an earlier body changed state this one reads: start afresh */
		state_drop(d);
		d = NULL;
	}
	state_drop(d);
	return NULL;
}

/* Returns a state to the run's idle ones (or closes it: no pool, or the
 * stage failed and the state may be half-way through something). */
static void state_give(kctx *c, dsl *d, int ok)
{
	dsl_pool *p = c->lua;
	if (!p || !ok) {
		state_drop(d);
		return;
	}
	pthread_mutex_lock(&p->mu);
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 4;
		p->idle = xrealloc(p->idle, p->cap * sizeof *p->idle);
	}
	p->idle[p->n++] = d;
	pthread_mutex_unlock(&p->mu);
}

static int lua_kernel(kctx *c, const hval *planned, const kinput *in, size_t nin, const char *outdir, int mode)
{
	dsl *d = state_take(c, planned);
	if (!d)
		return -1;
	lua_State *L = d->L;
	const dag_node *n = &d->own.nodes[c->node];
	exec x = {c, outdir, 0, NULL, NULL};
	int rc = 0;
	lua_rawgeti(L, LUA_REGISTRYINDEX, d->H);
	lua_getfield(L, -1, "fns");
	lua_rawgeti(L, -1, c->node);
	if (!lua_isfunction(L, -1))
		rc = herr_set(&c->err, "stage %s has no function to run", c->stage);
	/* the body: on its budget, stoppable, with this stage's context */
	d->gen++;
	d->cur = &x;
	d->stage = c->stage;
	d->stop = &c->stop;
	d->steps = 0;
	d->over = 0;
	d->max_steps = n->budget > 0 ? n->budget : BODY_STEPS;
	rand_restore(d);
	lua_sethook(L, count_hook, LUA_MASKCOUNT, 1000000);
	if (rc == 0 && mode == 0) {
		int fn = lua_gettop(L);
		if (!lua_checkstack(L, (int)nin + 8)) {
			rc = herr_set(&c->err, "stage %s: too many inputs (%zu)", c->stage, nin);
			goto done;
		}
		lua_pushvalue(L, fn);
		push_ctx(L, d, n, in, nin);
		int npos = 0;
		for (size_t i = 0; i < nin; i++) {
			char *end;
			strtol(in[i].slot, &end, 10);
			if (*end == 0) {
				push_artifact(L, d, &in[i]);
				npos++;
			}
		}
		if (lua_pcall(L, 1 + npos, 0, 0) != LUA_OK)
			rc = lua_fail(d, "");
		/* outputs the body left open are closed here, and checked */
		while (x.open) {
			writer *w = x.open;
			if (writer_finish(w) != 0 && rc == 0)
				rc = herr_set(&c->err, "%s: write error", w->name ? w->name : "output");
		}
		/* every declared output must have been written */
		for (size_t i = 0; rc == 0 && i < n->nout; i++) {
			char *p = path_join(outdir, n->outputs[i]);
			if (!fs_is_dir(p))
				rc = herr_set(&c->err, "declares output '%s' but wrote no file under %s/",
				              n->outputs[i], n->outputs[i]);
			free(p);
		}
	} else if (rc == 0) {
		rc = run_linewise(d, &x, lua_gettop(L), &in[0], mode == 2);
	}
done:
	lua_sethook(L, NULL, 0, 0);
	while (x.open)
		writer_finish(x.open);
	while (x.iters)
		iter_finish(x.iters);
	d->cur = NULL;
	d->stage = NULL;
	d->stop = NULL;
	lua_settop(L, 0);
	state_give(c, d, rc == 0 && !d->over);
	return rc;
}

static int k_lua(kctx *c, const hval *p, const kinput *in, size_t nin, const char *out)
{
	return lua_kernel(c, p, in, nin, out, 0);
}

static int k_map(kctx *c, const hval *p, const kinput *in, size_t nin, const char *out)
{
	return lua_kernel(c, p, in, nin, out, 1);
}

static int k_filter(kctx *c, const hval *p, const kinput *in, size_t nin, const char *out)
{
	return lua_kernel(c, p, in, nin, out, 2);
}

const kernel_def stage_lua = {"lua", 1, k_lua, NULL};
const kernel_def stage_lua_map = {"lua-map", 1, k_map, NULL};
const kernel_def stage_lua_filter = {"lua-filter", 1, k_filter, NULL};
