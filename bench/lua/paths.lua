-- Requests over a list of paths, one per line in args[3]; each thread takes
-- every nthreads-th line (args[2] = nthreads). args[1]: 'cycle' or 'once'.
-- 'once' (deletes): after its share, a thread asks for a missing path (404),
-- which the harness subtracts and reports.
function init(args)
  mode, nthreads = args[1], tonumber(args[2])
  paths = {}
  local i = 0
  for line in io.lines(args[3]) do
    if i % nthreads == (tid or 1) - 1 then paths[#paths + 1] = line end
    i = i + 1
  end
  pos = 0
  method = args[4] or 'GET'
end

function request()
  pos = pos + 1
  local path
  if pos <= #paths then
    path = paths[pos]
  elseif mode == 'cycle' then
    pos = 1
    path = paths[1]
  else
    path = '/exhausted/' .. pos
  end
  return wrk.format(method, path)
end
