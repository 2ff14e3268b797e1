-- Uploads with distinct content per request (dedupe must not fake the numbers).
-- args: method, path, size, nonce, mode ('fixed': always path; 'name': path .. name)
function init(args)
  method, base, size, nonce, mode = args[1], args[2], tonumber(args[3]), args[4], args[5]
  counter = 0
  pad = string.rep('b', size)
  headers = {['Content-Type'] = 'application/octet-stream'}
end

function request()
  counter = counter + 1
  local name = string.format('%s-%d-%d', nonce, tid or 0, counter)
  local body = name .. '\n' .. string.sub(pad, #name + 2)
  local path = base
  if mode == 'name' then path = base .. name end
  return wrk.format(method, path, headers, body)
end
