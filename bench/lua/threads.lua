-- Number the threads so each can make names no other thread makes.
local nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set('tid', nthreads)
end
